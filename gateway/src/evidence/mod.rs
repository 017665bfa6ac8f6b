//! Evidence bundles: what an auditor carries away and checks offline (`tom audit evidence`,
//! `GET /v1/evidence/{id}`, `tom audit verify-evidence`).
//!
//! A bundle is one JSON document (`tom-evidence`, version 1) about one entity's lineage. It holds
//! the lineage and its PROV-JSON as the gateway answered them, and everything a stranger needs to
//! check them without trusting the gateway:
//!
//! ```text
//! {
//!   "format": "tom-evidence", "version": 1,
//!   "subject": "<entity id>", "created": "<RFC 3339>",
//!   "query":   { "argument": {"id","direction","depth"}, "timestamp", "creator_msp_id",
//!                "creator_certificate_pem" },     -- the GetLineage call the bundle answers
//!   "lineage": <GetLineage JSON>,                 -- as the contract returned it
//!   "prov":    <PROV-JSON>,                       -- ExportProv of the same call
//!   "records": [<LedgerRecord JSON>, ...],        -- one per transaction below, same order
//!   "state":   [{"key","block","tx"}, ...],       -- every state key the query read, with the
//!                                                 -- position of the transaction that wrote it
//!   "ledger":  { "kind": "embedded", ... }        -- the proof, per back end (below)
//! }
//! ```
//!
//! **Embedded ledger** (`"kind": "embedded"`): `node_public_key_pem` (the node's block-signing
//! key, SubjectPublicKeyInfo PEM: the same as `node.pub.pem`); `transactions`: `{tx_id, block,
//! index, bytes}` with `bytes` the base64 of the transaction exactly as the block stores it
//! (`TOMT`, see `ledger::embedded::codec`: proposal with the creator's certificate, the creator's
//! signature, read-write set, response, validation code); `blocks`: `{number, header,
//! signature}` for every block from the oldest one holding a transaction to the newest block at
//! the time of export, `header` the base64 of the header bytes exactly as hashed and signed
//! (`TOMH`: number, previous hash, data hash, time, transaction hashes), `signature` the base64
//! DER ECDSA P-256 signature of the node over the newest header (absent on the others: the hash
//! links carry it back).
//!
//! **Fabric** (`"kind": "fabric"`): `channel`, `chaincode`, `config_block` (base64
//! `common.Block`), `blocks` (`{number, block}`, base64 `common.Block`) and `transactions`
//! (`{tx_id, block, index, processed}`, base64 `protos.ProcessedTransaction`): Fabric's own bytes
//! from `qscc`, see [`fabric`]. Version 1 reserved the kind without producing it (older tom
//! rejects such a bundle at the `format` check); the embedded layout is unchanged.
//!
//! What `verify` proves: every transaction is byte for byte one the ledger committed (its hash is
//! in a header that hash-links to the newest header, which the node signed), was signed by the
//! certificate in it, and is VALID; each record is the one its transaction wrote; every state
//! value the lineage query read was written by a transaction in the bundle; and re-running the
//! contract's own `GetLineage` and `ExportProv` over exactly those values gives the bundled
//! lineage and PROV-JSON. With `--trust CA.pem`, every creator (and, on Fabric, endorser)
//! certificate chains to one of the given CAs; each data item's DSSE claim is checked with its
//! signer's certificate.
//!
//! What it cannot prove: that nothing happened after the newest block, or that the ledger holds
//! no later version of a key the query read (the blocks carry no state commitment): the bundle
//! speaks as of its newest block.

pub mod fabric;
pub mod verify;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use verify::{verify, Failure, Options, Verified};

pub const FORMAT: &str = "tom-evidence";
pub const VERSION: u32 = 1;

/// One evidence bundle. Field order is the document's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub format: String,
    pub version: u32,
    pub subject: String,
    pub created: String,
    pub query: Query,
    pub lineage: Value,
    pub prov: Value,
    pub records: Vec<Value>,
    pub state: Vec<StateEntry>,
    pub ledger: LedgerProof,
}

/// The lineage query the bundle answers, and as whom and when it ran (the contract needs a
/// caller with a certificate valid at that time to run it again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    pub argument: tom_contract::requests::LineageQuery,
    pub timestamp: String,
    pub creator_msp_id: String,
    pub creator_certificate_pem: String,
}

/// A state key the query read and the transaction that wrote the value it read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateEntry {
    pub key: String,
    pub block: u64,
    pub tx: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LedgerProof {
    Embedded(EmbeddedProof),
    Fabric(fabric::FabricProof),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedProof {
    pub node_public_key_pem: String,
    pub transactions: Vec<EmbeddedTransaction>,
    pub blocks: Vec<EmbeddedBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedTransaction {
    pub tx_id: String,
    pub block: u64,
    pub index: u32,
    /// Base64 of the `TOMT` bytes.
    pub bytes: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedBlock {
    pub number: u64,
    /// Base64 of the `TOMH` header bytes.
    pub header: String,
    /// Base64 DER node signature over the header; on the newest block only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

pub(crate) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Every non-empty string under a `tx_id` field, anywhere in `value`.
pub(crate) fn tx_ids_in(value: &Value, out: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("tx_id", Value::String(s)) if !s.is_empty() => {
                        out.insert(s.clone());
                    }
                    _ => tx_ids_in(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| tx_ids_in(v, out)),
        _ => {}
    }
}
