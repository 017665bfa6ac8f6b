//! Fabric evidence (`"kind": "fabric"`): **not produced yet**. A Fabric gateway answers
//! `GET /v1/evidence/{id}` with 400, and this version rejects a Fabric bundle at the `format`
//! check. The type exists so the document format has its place reserved.
//!
//! The planned proof, in Fabric's own protobuf bytes (base64), so any Fabric tooling can read it:
//!
//! * per transaction, the `ProcessedTransaction` from the ledger query system chaincode
//!   (`qscc GetTransactionByID`): the `Envelope` (creator `SerializedIdentity` and signature over
//!   the payload; the endorsed action with every endorsement's identity and signature over the
//!   proposal response payload ‖ endorser; the read-write set in which the record is written)
//!   and its validation code;
//! * per holding block, the `Block` from `qscc GetBlockByTxID`: the header (whose data hash
//!   covers the envelopes) and the SIGNATURES metadata (the orderer's signature over metadata ‖
//!   signature header ‖ ASN.1 header), plus the TRANSACTIONS_FILTER that holds the validation
//!   codes;
//! * the channel's latest config block (`GetBlockByNumber` of the LAST_CONFIG index), from which
//!   the verifier takes each organisation's MSP root certificates and the endorsement policy, so
//!   creators, endorsers and orderers chain to organisations that were channel members.
//!
//! The verifier would check creator and endorser signatures, that the endorsing organisations
//! satisfy the policy (naming them: [`super::Verified::endorsements`]), VALID in the filter, the
//! orderer's signature on each holding block, then hand the read-write sets to the same content
//! checks as the embedded ledger ([`super::verify`]). Fabric blocks are signed individually by
//! the orderer, so no hash chain to the newest block is needed.

use serde::{Deserialize, Serialize};

use super::verify::{fail, CommittedTx, Failure, Options, Verified};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FabricProof {
    pub channel: String,
}

pub(crate) fn verify_proof(
    proof: &FabricProof,
    _options: &Options,
) -> Result<(Vec<CommittedTx>, Verified), Failure> {
    Err(fail(
        "format",
        format!(
            "Fabric bundles (channel {}) are not supported by this version of tom",
            proof.channel
        ),
    ))
}
