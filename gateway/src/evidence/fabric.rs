//! Fabric evidence (`"kind": "fabric"`): the proof is made of Fabric's own protobuf messages,
//! exactly as the peers' ledger query system chaincode (`qscc`) returned them, base64 encoded,
//! so any Fabric tooling (`configtxlator proto_decode`) can read them too:
//!
//! ```text
//! "ledger": {
//!   "kind": "fabric", "channel": "tom", "chaincode": "tom",
//!   "config_block": "<base64 common.Block>",      -- the channel's latest config block (qscc
//!                                                  -- GetBlockByNumber of the LAST_CONFIG index
//!                                                  -- in the newest block's metadata)
//!   "blocks": [{"number", "block": "<base64 common.Block>"}, ...],
//!                                                  -- every block holding a bundled transaction
//!                                                  -- (qscc GetBlockByTxID / GetBlockByNumber)
//!   "transactions": [{"tx_id", "block", "index",
//!                     "processed": "<base64 protos.ProcessedTransaction>"}, ...]
//!                                                  -- qscc GetTransactionByID: the envelope as
//!                                                  -- committed and its validation code
//! }
//! ```
//!
//! `records[i]` and `state` are as for the embedded ledger; `state`'s `block`/`tx` are Fabric's
//! read versions (block number, transaction number in the block), from the read set the peers
//! returned when endorsing the GetLineage / ExportProv proposals (never submitted).
//!
//! Checks, in order (the first that fails is named):
//!
//! | check | what |
//! |---|---|
//! | `config-block` | the config block decodes, is a config block, its data hash covers its data and an orderer of the organisations it lists signed it; each organisation's MSP root certificates are read from it |
//! | `block-decode` | each block decodes and its number is the one listed |
//! | `data-hash` | the header's data hash is SHA-256 of the block's data (its envelopes, concatenated) |
//! | `orderer-signature` | a signature in the SIGNATURES metadata, over metadata value ‖ signature header ‖ ASN.1 header, verifies with an orderer certificate that chains to an orderer organisation's MSP roots |
//! | `config-block` | no holding block names a config block newer than the bundled one |
//! | `transaction-decode` | the processed transaction and its envelope decode |
//! | `transaction-id` | the channel header's id is the listed one and `sha256(nonce ‖ creator)`, of this channel |
//! | `endorsement-signature` | each endorser's signature over proposal response payload ‖ endorser verifies |
//! | `endorser-trust` | each endorser is a peer (OU=peer) chaining to its MSP's roots (and to `--trust`) |
//! | `endorsement-policy` | a peer of every application organisation of the channel endorsed (the test network's `AND('Org1MSP.peer','Org2MSP.peer')`); the organisations are reported |
//! | `creator-signature` | the creator's signature over the envelope payload verifies |
//! | `creator-trust` | the creator chains to its MSP's roots in the config block (and to `--trust`) |
//! | `transaction-position` | the envelope is byte for byte the block's data entry at `index` |
//! | `validation-code` | VALID in the processed transaction and in the block's TRANSACTIONS_FILTER |
//!
//! then the content checks shared with the embedded ledger (`record`, `record-agent`, `state`,
//! `lineage`, `prov`, `claim`), on the write set of the chaincode's namespace.
//!
//! Fabric blocks are signed one by one by the orderer, so no hash chain to a newest block is
//! needed. What the bundle cannot show: the chaincode definition's own endorsement policy (it
//! lives in the lifecycle state, not in a block): the verifier requires every application
//! organisation, which is at least as strict as the channel's default MAJORITY on two orgs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine;
use prost::Message;
use serde::{Deserialize, Serialize};
use tom_contract::identity::Certificate;
use tom_contract::{Creator, Timestamp};

use super::b64;
use super::verify::{fail, CommittedTx, Failure, Options, Verified};
use crate::ledger::embedded::codec::sha256;
use crate::ledger::fabric::protos::{common, kvrwset, msp, peer, rwset};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricProof {
    pub channel: String,
    /// The chaincode (state namespace) the records are written by.
    pub chaincode: String,
    /// Base64 `common.Block`: the channel's latest configuration.
    pub config_block: String,
    pub blocks: Vec<FabricBlock>,
    pub transactions: Vec<FabricTransaction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricBlock {
    pub number: u64,
    /// Base64 `common.Block`, as qscc returned it.
    pub block: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricTransaction {
    pub tx_id: String,
    pub block: u64,
    /// Position of the envelope in the block's data.
    pub index: u32,
    /// Base64 `protos.ProcessedTransaction`, as qscc GetTransactionByID returned it.
    pub processed: String,
}

/// Block metadata indexes (common.BlockMetadataIndex).
const META_SIGNATURES: usize = 0;
const META_TRANSACTIONS_FILTER: usize = 2;

/// One organisation of the channel configuration.
#[derive(Debug, Default)]
struct Org {
    roots: Vec<String>,
    application: bool,
    orderer: bool,
}

fn decode_b64(check: &'static str, what: &str, text: &str) -> Result<Vec<u8>, Failure> {
    b64()
        .decode(text)
        .map_err(|e| fail(check, format!("{what} is not base64: {e}")))
}

/// The MSPs of a config block: MSP id → roots, and whether it is an application / orderer org.
fn channel_orgs(bytes: &[u8]) -> Result<(u64, BTreeMap<String, Org>), Failure> {
    let bad = |what: String| fail("config-block", what);
    let block = common::Block::decode(bytes).map_err(|e| bad(format!("not a block: {e}")))?;
    let number = block.header.as_ref().map(|h| h.number).unwrap_or_default();
    let data = block.data.ok_or_else(|| bad("no data".into()))?;
    let first = data.data.first().ok_or_else(|| bad("no envelope".into()))?;
    let envelope =
        common::Envelope::decode(first.as_slice()).map_err(|e| bad(format!("envelope: {e}")))?;
    let payload = common::Payload::decode(envelope.payload.as_slice())
        .map_err(|e| bad(format!("payload: {e}")))?;
    let header = payload.header.ok_or_else(|| bad("no header".into()))?;
    let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(|e| bad(format!("channel header: {e}")))?;
    if channel_header.r#type != common::HeaderType::Config as i32 {
        return Err(bad(format!("block {number} is not a config block")));
    }
    let config = common::ConfigEnvelope::decode(payload.data.as_slice())
        .map_err(|e| bad(format!("config envelope: {e}")))?
        .config
        .and_then(|c| c.channel_group)
        .ok_or_else(|| bad("no channel group".into()))?;
    let mut orgs: BTreeMap<String, Org> = BTreeMap::new();
    for (section, application) in [("Application", true), ("Orderer", false)] {
        let Some(group) = config.groups.get(section) else {
            continue;
        };
        for (name, org) in &group.groups {
            let Some(value) = org.values.get("MSP") else {
                continue;
            };
            let msp_config = msp::MspConfig::decode(value.value.as_slice())
                .map_err(|e| bad(format!("{section}/{name} MSP: {e}")))?;
            let fabric = msp::FabricMspConfig::decode(msp_config.config.as_slice())
                .map_err(|e| bad(format!("{section}/{name} MSP config: {e}")))?;
            let entry = orgs.entry(fabric.name.clone()).or_default();
            entry.application |= application;
            entry.orderer |= !application;
            for root in fabric.root_certs {
                let pem = String::from_utf8(root)
                    .map_err(|_| bad(format!("{} root certificate is not PEM", fabric.name)))?;
                if !entry.roots.contains(&pem) {
                    entry.roots.push(pem);
                }
            }
        }
    }
    if !orgs.values().any(|o| o.application) {
        return Err(bad(
            "the channel configuration has no application organisation".into(),
        ));
    }
    Ok((number, orgs))
}

/// DER of the block header as Fabric hashes and signs it:
/// `SEQUENCE { INTEGER number, OCTET STRING previous_hash, OCTET STRING data_hash }`.
pub(crate) fn header_asn1(header: &common::BlockHeader) -> Vec<u8> {
    fn length(out: &mut Vec<u8>, n: usize) {
        if n < 128 {
            out.push(n as u8);
        } else {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
    }
    let mut number: Vec<u8> = header
        .number
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    if number.first().is_none_or(|b| b & 0x80 != 0) {
        number.insert(0, 0);
    }
    let mut body = vec![0x02];
    length(&mut body, number.len());
    body.extend(number);
    for octets in [&header.previous_hash, &header.data_hash] {
        body.push(0x04);
        length(&mut body, octets.len());
        body.extend_from_slice(octets);
    }
    let mut out = vec![0x30];
    length(&mut out, body.len());
    out.extend(body);
    out
}

/// A `SerializedIdentity`'s MSP id and certificate.
fn identity(
    check: &'static str,
    what: &str,
    bytes: &[u8],
) -> Result<(String, Vec<u8>, Arc<Certificate>), Failure> {
    let id = msp::SerializedIdentity::decode(bytes)
        .map_err(|e| fail(check, format!("{what}: not a serialized identity: {e}")))?;
    let text = std::str::from_utf8(&id.id_bytes)
        .map_err(|_| fail(check, format!("{what}: the certificate is not PEM")))?;
    let certificate = Certificate::from_pem_cached(text)
        .map_err(|e| fail(check, format!("{what}: certificate: {e}")))?;
    Ok((id.mspid, id.id_bytes, certificate))
}

/// The certificate chains to the roots of its MSP in the channel configuration, and to the
/// auditor's `--trust` anchors when given.
fn anchored(
    check: &'static str,
    what: &str,
    orgs: &BTreeMap<String, Org>,
    msp_id: &str,
    certificate: &Certificate,
    at: Timestamp,
    options: &Options,
) -> Result<(), Failure> {
    let Some(org) = orgs.get(msp_id) else {
        return Err(fail(
            check,
            format!(
                "{what} {} claims {msp_id}, which is not an organisation of the channel \
                 configuration",
                certificate.info.subject
            ),
        ));
    };
    tom_contract::identity::check_chain(certificate, &org.roots, at)
        .map_err(|e| fail(check, format!("{what} of {msp_id}: {e}")))?;
    if !options.trust.is_empty() {
        tom_contract::identity::check_chain(certificate, &options.trust, at)
            .map_err(|e| fail(check, format!("{what} of {msp_id} (--trust): {e}")))?;
    }
    Ok(())
}

fn timestamp_of(t: Option<&crate::ledger::fabric::protos::Timestamp>) -> Timestamp {
    t.map(|t| Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
    .unwrap_or(Timestamp {
        seconds: 0,
        nanos: 0,
    })
}

/// The orderer's signature in a block's SIGNATURES metadata (over metadata value ‖ signature
/// header ‖ ASN.1 header) by an orderer organisation's certificate: who signed, and the
/// metadata.
fn orderer_signed(
    metadata: &[Vec<u8>],
    header_bytes: &[u8],
    orgs: &BTreeMap<String, Org>,
    options: &Options,
) -> Result<(String, common::Metadata), String> {
    let signatures = metadata
        .get(META_SIGNATURES)
        .map(|m| common::Metadata::decode(m.as_slice()))
        .transpose()
        .map_err(|e| format!("SIGNATURES metadata: {e}"))?
        .unwrap_or_default();
    let mut reasons = Vec::new();
    for signature in &signatures.signatures {
        let Ok(signature_header) =
            common::SignatureHeader::decode(signature.signature_header.as_slice())
        else {
            reasons.push("a signature header does not decode".to_owned());
            continue;
        };
        let (msp_id, _, certificate) =
            match identity("orderer-signature", "orderer", &signature_header.creator) {
                Ok(id) => id,
                Err(e) => {
                    reasons.push(e.detail);
                    continue;
                }
            };
        let message = [
            signatures.value.as_slice(),
            signature.signature_header.as_slice(),
            header_bytes,
        ]
        .concat();
        if !certificate.verify(&message, &signature.signature) {
            reasons.push(format!(
                "the signature of {} does not verify",
                certificate.info.subject
            ));
            continue;
        }
        if !orgs.get(&msp_id).is_some_and(|o| o.orderer) {
            reasons.push(format!("{msp_id} is not an orderer organisation"));
            continue;
        }
        // A block carries no time of its own: the orderer's certificate is checked as of the
        // start of its validity (its issuer must have been valid then).
        let at = certificate.info.not_before;
        // The orderer is anchored by the channel configuration only: `--trust` names the CAs
        // of the organisations whose creators and endorsers the auditor checks.
        let _ = options;
        match anchored(
            "orderer-signature",
            "orderer",
            orgs,
            &msp_id,
            &certificate,
            at,
            &Options::default(),
        ) {
            Ok(()) => {
                return Ok((format!("{msp_id}/{}", certificate.common_name), signatures));
            }
            Err(e) => reasons.push(e.detail),
        }
    }
    Err(format!(
        "no orderer signature verifies ({})",
        if reasons.is_empty() {
            "it carries none".to_owned()
        } else {
            reasons.join("; ")
        }
    ))
}

struct CheckedBlock {
    data: Vec<Vec<u8>>,
    filter: Vec<u8>,
}

pub(crate) fn verify_proof(
    proof: &FabricProof,
    options: &Options,
) -> Result<(Vec<CommittedTx>, Verified), Failure> {
    let config_bytes = decode_b64("config-block", "the config block", &proof.config_block)?;
    let (config_number, orgs) = channel_orgs(&config_bytes)?;
    let (config_signer, config_hash);
    {
        // The configuration is itself a block the orderer signed.
        let block = common::Block::decode(config_bytes.as_slice())
            .map_err(|e| fail("config-block", e.to_string()))?;
        let header = block.header.unwrap_or_default();
        let data = block.data.map(|d| d.data).unwrap_or_default();
        if sha256(&data.concat()).as_slice() != header.data_hash.as_slice() {
            return Err(fail(
                "config-block",
                format!(
                    "config block {config_number}: the header's data hash is not the hash of \
                     its data (the configuration was altered)"
                ),
            ));
        }
        let metadata = block.metadata.map(|m| m.metadata).unwrap_or_default();
        let header_bytes = header_asn1(&header);
        let unsigned = common::Metadata::decode(metadata.first().map_or(&[][..], Vec::as_slice))
            .map(|m| m.signatures.is_empty())
            .unwrap_or(false);
        config_signer = if config_number == 0 && unsigned {
            // The genesis block is made by configtxgen, not ordered: nobody signs it. It is
            // the channel's root of trust; its hash is reported for comparison.
            "unsigned genesis block".to_owned()
        } else {
            let (signer, _) = orderer_signed(&metadata, &header_bytes, &orgs, options)
                .map_err(|e| fail("config-block", format!("config block {config_number}: {e}")))?;
            format!("signed by {signer}")
        };
        config_hash = hex::encode(sha256(&header_bytes));
    }

    // Blocks: data hash, orderer signature, configuration.
    let mut blocks: BTreeMap<u64, CheckedBlock> = BTreeMap::new();
    let mut tip: Option<(u64, String, String)> = None;
    for entry in &proof.blocks {
        let what = format!("block {}", entry.number);
        let bytes = decode_b64("block-decode", &what, &entry.block)?;
        let block = common::Block::decode(bytes.as_slice())
            .map_err(|e| fail("block-decode", format!("{what}: {e}")))?;
        let header = block
            .header
            .ok_or_else(|| fail("block-decode", format!("{what}: no header")))?;
        if header.number != entry.number {
            return Err(fail(
                "block-decode",
                format!(
                    "the block listed as {} is block {}",
                    entry.number, header.number
                ),
            ));
        }
        let data = block.data.map(|d| d.data).unwrap_or_default();
        if sha256(&data.concat()).as_slice() != header.data_hash.as_slice() {
            return Err(fail(
                "data-hash",
                format!("{what}: the header's data hash is not the hash of the block's data"),
            ));
        }
        let metadata = block.metadata.map(|m| m.metadata).unwrap_or_default();
        let header_bytes = header_asn1(&header);
        let (signer, signatures) = orderer_signed(&metadata, &header_bytes, &orgs, options)
            .map_err(|e| fail("orderer-signature", format!("{what}: {e}")))?;
        if let Ok(meta) = common::OrdererBlockMetadata::decode(signatures.value.as_slice()) {
            if let Some(last) = meta.last_config {
                if last.index > config_number {
                    return Err(fail(
                        "config-block",
                        format!(
                            "{what} was ordered under config block {}, newer than the bundled \
                             config block {config_number}",
                            last.index
                        ),
                    ));
                }
            }
        }
        if tip.as_ref().is_none_or(|(n, _, _)| header.number > *n) {
            tip = Some((header.number, hex::encode(sha256(&header_bytes)), signer));
        }
        let filter = metadata
            .get(META_TRANSACTIONS_FILTER)
            .cloned()
            .unwrap_or_default();
        blocks.insert(header.number, CheckedBlock { data, filter });
    }

    // Transactions.
    let application: BTreeSet<&str> = orgs
        .iter()
        .filter(|(_, o)| o.application)
        .map(|(id, _)| id.as_str())
        .collect();
    let mut txs = Vec::with_capacity(proof.transactions.len());
    let mut ids = BTreeSet::new();
    let mut agents = BTreeSet::new();
    let mut endorsements = BTreeMap::new();
    for entry in &proof.transactions {
        let name = format!(
            "tx {} (block {}, index {})",
            entry.tx_id, entry.block, entry.index
        );
        let decode = |what: &str, e: prost::DecodeError| {
            fail("transaction-decode", format!("{name}: {what}: {e}"))
        };
        let bytes = decode_b64("transaction-decode", &name, &entry.processed)?;
        let processed = peer::ProcessedTransaction::decode(bytes.as_slice())
            .map_err(|e| decode("processed transaction", e))?;
        let envelope = processed
            .transaction_envelope
            .clone()
            .ok_or_else(|| fail("transaction-decode", format!("{name}: no envelope")))?;
        let payload = common::Payload::decode(envelope.payload.as_slice())
            .map_err(|e| decode("payload", e))?;
        let header = payload
            .header
            .ok_or_else(|| fail("transaction-decode", format!("{name}: no header")))?;
        let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice())
            .map_err(|e| decode("channel header", e))?;
        let signature_header = common::SignatureHeader::decode(header.signature_header.as_slice())
            .map_err(|e| decode("signature header", e))?;
        if channel_header.tx_id != entry.tx_id {
            return Err(fail(
                "transaction-id",
                format!("{name}: the transaction's id is {}", channel_header.tx_id),
            ));
        }
        if crate::ledger::fabric::proposal::transaction_id(
            &signature_header.nonce,
            &signature_header.creator,
        ) != entry.tx_id
        {
            return Err(fail(
                "transaction-id",
                format!("{name}: the id is not sha256(nonce ‖ creator)"),
            ));
        }
        if channel_header.channel_id != proof.channel {
            return Err(fail(
                "transaction-id",
                format!(
                    "{name}: it belongs to channel {}",
                    channel_header.channel_id
                ),
            ));
        }
        if !ids.insert(entry.tx_id.clone()) {
            return Err(fail("transaction-id", format!("{name}: listed twice")));
        }
        let timestamp = timestamp_of(channel_header.timestamp.as_ref());
        // The endorsed action.
        let transaction = peer::Transaction::decode(payload.data.as_slice())
            .map_err(|e| decode("transaction", e))?;
        let [action] = transaction.actions.as_slice() else {
            return Err(fail(
                "transaction-decode",
                format!("{name}: {} actions, not one", transaction.actions.len()),
            ));
        };
        let action_payload = peer::ChaincodeActionPayload::decode(action.payload.as_slice())
            .map_err(|e| decode("action payload", e))?;
        let endorsed = action_payload
            .action
            .ok_or_else(|| fail("transaction-decode", format!("{name}: no endorsed action")))?;
        let mut endorsing = BTreeSet::new();
        for (i, endorsement) in endorsed.endorsements.iter().enumerate() {
            let what = format!("{name}: endorsement {i}");
            let (endorser_msp, _, endorser) =
                identity("endorsement-signature", &what, &endorsement.endorser)?;
            let message = [
                endorsed.proposal_response_payload.as_slice(),
                endorsement.endorser.as_slice(),
            ]
            .concat();
            if !endorser.verify(&message, &endorsement.signature) {
                return Err(fail(
                    "endorsement-signature",
                    format!(
                        "{what}: the signature of {} ({endorser_msp}) does not verify",
                        endorser.info.subject
                    ),
                ));
            }
            anchored(
                "endorser-trust",
                &format!("{what}: endorser"),
                &orgs,
                &endorser_msp,
                &endorser,
                timestamp,
                options,
            )?;
            if !endorser
                .info
                .subject
                .split(", ")
                .any(|part| part == "OU=peer")
            {
                return Err(fail(
                    "endorser-trust",
                    format!(
                        "{what}: {} is not a peer of {endorser_msp} (no OU=peer)",
                        endorser.info.subject
                    ),
                ));
            }
            endorsing.insert(endorser_msp);
        }
        let missing: Vec<&str> = application
            .iter()
            .filter(|org| !endorsing.contains(**org))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(fail(
                "endorsement-policy",
                format!(
                    "{name}: endorsed by [{}], missing a peer of {}",
                    endorsing.iter().cloned().collect::<Vec<_>>().join(", "),
                    missing.join(", ")
                ),
            ));
        }

        // The creator's signature over everything above, and the block that holds it.
        let (msp_id, id_bytes, certificate) =
            identity("creator-signature", &name, &signature_header.creator)?;
        if !certificate.verify(&envelope.payload, &envelope.signature) {
            return Err(fail(
                "creator-signature",
                format!(
                    "{name}: the envelope signature does not verify with the key of {}",
                    certificate.info.subject
                ),
            ));
        }
        anchored(
            "creator-trust",
            &format!("{name}: creator"),
            &orgs,
            &msp_id,
            &certificate,
            timestamp,
            options,
        )?;

        let Some(block) = blocks.get(&entry.block) else {
            return Err(fail(
                "transaction-position",
                format!("{name}: block {} is not in the bundle", entry.block),
            ));
        };
        let in_block = block.data.get(entry.index as usize);
        if in_block.map(Vec::as_slice) != Some(envelope.encode_to_vec().as_slice()) {
            return Err(fail(
                "transaction-position",
                format!(
                    "{name}: the envelope is not the block's data entry {}",
                    entry.index
                ),
            ));
        }
        let valid = peer::TxValidationCode::Valid as i32;
        if processed.validation_code != valid {
            return Err(fail(
                "validation-code",
                format!(
                    "{name}: committed {}, not VALID",
                    crate::ledger::fabric::errors::validation_code_name(processed.validation_code)
                ),
            ));
        }
        match block.filter.get(entry.index as usize) {
            Some(&code) if i32::from(code) == valid => {}
            other => {
                return Err(fail(
                    "validation-code",
                    format!(
                        "{name}: the block's transactions filter says {}, not VALID",
                        other.map_or("nothing".to_owned(), |c| {
                            crate::ledger::fabric::errors::validation_code_name(i32::from(*c))
                        })
                    ),
                ))
            }
        }

        // The write set of the chaincode's namespace.
        let response =
            peer::ProposalResponsePayload::decode(endorsed.proposal_response_payload.as_slice())
                .map_err(|e| decode("proposal response payload", e))?;
        let chaincode_action = peer::ChaincodeAction::decode(response.extension.as_slice())
            .map_err(|e| decode("chaincode action", e))?;
        let results = rwset::TxReadWriteSet::decode(chaincode_action.results.as_slice())
            .map_err(|e| decode("read-write set", e))?;
        let mut writes = BTreeMap::new();
        for ns in results
            .ns_rwset
            .iter()
            .filter(|n| n.namespace == proof.chaincode)
        {
            let kv = kvrwset::KvrwSet::decode(ns.rwset.as_slice())
                .map_err(|e| decode("key-value read-write set", e))?;
            for w in kv.writes {
                writes.insert(w.key, (!w.is_delete).then_some(w.value));
            }
        }

        agents.insert(certificate.agent(&msp_id).id);
        endorsements.insert(entry.tx_id.clone(), endorsing);
        txs.push(CommittedTx {
            tx_id: entry.tx_id.clone(),
            block: entry.block,
            index: entry.index,
            creator: Creator {
                msp_id,
                certificate_pem: id_bytes,
            },
            certificate,
            timestamp,
            writes,
        });
    }

    let first_block = blocks.keys().next().copied().unwrap_or_default();
    let (tip_block, tip_hash, tip_signer) = tip.unwrap_or_default();
    let verified = Verified {
        subject: String::new(),
        ledger: "fabric",
        records: 0,
        transactions: txs.len(),
        first_block,
        tip_block,
        tip_hash,
        tip_signer: format!(
            "the orderer {tip_signer} (every block is signed by the orderer); MSP roots from \
             config block {config_number} ({config_signer}, header sha256 {config_hash})"
        ),
        agents,
        anchored: !options.trust.is_empty(),
        claims: 0,
        endorsements,
    };
    Ok((txs, verified))
}

#[cfg(test)]
mod tests {
    //! On a bundle captured from the native Fabric 2.5 test network (scripts/fabric-testnet.sh):
    //! `tom audit evidence <smart-city ack> --depth 1` through `tom serve --fabric`.
    use super::*;
    use crate::evidence::{verify, Bundle, LedgerProof};

    const BUNDLE: &str = include_str!("testdata/fabric-ack-depth1.json");

    fn bundle() -> Bundle {
        serde_json::from_str(BUNDLE).unwrap()
    }

    fn proof(b: &mut Bundle) -> &mut FabricProof {
        match &mut b.ledger {
            LedgerProof::Fabric(p) => p,
            LedgerProof::Embedded(_) => panic!("not a Fabric bundle"),
        }
    }

    fn check_of(b: &Bundle) -> &'static str {
        let bytes = serde_json::to_vec(b).unwrap();
        verify(&bytes, &Options::default()).unwrap_err().check
    }

    fn processed(b: &mut Bundle, i: usize) -> peer::ProcessedTransaction {
        let text = &proof(b).transactions[i].processed;
        peer::ProcessedTransaction::decode(b64().decode(text).unwrap().as_slice()).unwrap()
    }

    fn set_processed(b: &mut Bundle, i: usize, p: &peer::ProcessedTransaction) {
        proof(b).transactions[i].processed = b64().encode(p.encode_to_vec());
    }

    #[test]
    fn the_captured_bundle_verifies_and_names_both_endorsing_organisations() {
        let verified = verify(BUNDLE.as_bytes(), &Options::default()).unwrap();
        assert_eq!(verified.ledger, "fabric");
        assert!(verified.transactions >= 2, "{verified}");
        assert_eq!(verified.records, verified.transactions);
        for orgs in verified.endorsements.values() {
            let orgs: Vec<&str> = orgs.iter().map(String::as_str).collect();
            assert_eq!(orgs, ["Org1MSP", "Org2MSP"]);
        }
        assert!(verified.tip_signer.contains("OrdererMSP/"), "{verified}");
        assert!(verified
            .to_string()
            .contains("endorsed by: Org1MSP, Org2MSP"));
    }

    #[test]
    fn header_asn1_is_fabrics_encoding() {
        let header = common::BlockHeader {
            number: 128,
            previous_hash: vec![1; 32],
            data_hash: vec![2; 32],
        };
        let der = header_asn1(&header);
        assert_eq!(&der[..6], &[0x30, 0x48, 0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der.len(), 2 + 4 + 34 + 34);
        assert_eq!(
            header_asn1(&common::BlockHeader::default())[..5],
            [0x30, 0x07, 0x02, 0x01, 0x00]
        );
    }

    #[test]
    fn a_byte_of_the_creators_envelope_signature() {
        let mut b = bundle();
        let mut p = processed(&mut b, 0);
        let envelope = p.transaction_envelope.as_mut().unwrap();
        let last = envelope.signature.len() - 1;
        envelope.signature[last] ^= 1;
        set_processed(&mut b, 0, &p);
        assert_eq!(check_of(&b), "creator-signature");
    }

    #[test]
    fn an_envelope_other_than_the_blocks() {
        let mut b = bundle();
        let other = proof(&mut b).transactions[1].processed.clone();
        let p = &mut proof(&mut b).transactions[0];
        // Another genuine transaction listed under this one's id: its id check fails first.
        p.processed = other;
        assert_eq!(check_of(&b), "transaction-id");
        let mut b = bundle();
        let (first, second) = {
            let t = &proof(&mut b).transactions;
            (t[0].clone(), t[1].clone())
        };
        let t = &mut proof(&mut b).transactions[0];
        t.tx_id = second.tx_id.clone();
        t.processed = second.processed.clone();
        t.block = first.block;
        t.index = first.index;
        assert_eq!(check_of(&b), "transaction-position");
    }

    #[test]
    fn an_endorsement_signature() {
        let mut b = bundle();
        let mut p = processed(&mut b, 0);
        let envelope = p.transaction_envelope.as_mut().unwrap();
        let mut payload = common::Payload::decode(envelope.payload.as_slice()).unwrap();
        let mut tx = peer::Transaction::decode(payload.data.as_slice()).unwrap();
        let mut action =
            peer::ChaincodeActionPayload::decode(tx.actions[0].payload.as_slice()).unwrap();
        let endorsed = action.action.as_mut().unwrap();
        let sig = &mut endorsed.endorsements[1].signature;
        let at = sig.len() - 2;
        sig[at] ^= 0x40;
        tx.actions[0].payload = action.encode_to_vec();
        payload.data = tx.encode_to_vec();
        envelope.payload = payload.encode_to_vec();
        set_processed(&mut b, 0, &p);
        assert_eq!(check_of(&b), "endorsement-signature");
    }

    #[test]
    fn one_organisations_endorsement_removed() {
        let mut b = bundle();
        let mut p = processed(&mut b, 0);
        let envelope = p.transaction_envelope.as_mut().unwrap();
        let mut payload = common::Payload::decode(envelope.payload.as_slice()).unwrap();
        let mut tx = peer::Transaction::decode(payload.data.as_slice()).unwrap();
        let mut action =
            peer::ChaincodeActionPayload::decode(tx.actions[0].payload.as_slice()).unwrap();
        action.action.as_mut().unwrap().endorsements.truncate(1);
        tx.actions[0].payload = action.encode_to_vec();
        payload.data = tx.encode_to_vec();
        envelope.payload = payload.encode_to_vec();
        set_processed(&mut b, 0, &p);
        let bytes = serde_json::to_vec(&b).unwrap();
        let failure = verify(&bytes, &Options::default()).unwrap_err();
        assert_eq!(failure.check, "endorsement-policy", "{failure}");
        assert!(failure.detail.contains("missing a peer of"), "{failure}");
    }

    #[test]
    fn the_validation_code() {
        let mut b = bundle();
        let mut p = processed(&mut b, 0);
        p.validation_code = peer::TxValidationCode::MvccReadConflict as i32;
        set_processed(&mut b, 0, &p);
        let bytes = serde_json::to_vec(&b).unwrap();
        let failure = verify(&bytes, &Options::default()).unwrap_err();
        assert_eq!(failure.check, "validation-code", "{failure}");
        assert!(failure.detail.contains("MVCC_READ_CONFLICT"), "{failure}");
    }

    #[test]
    fn a_record_field() {
        let mut b = bundle();
        b.records[0]["timestamp"] = "2020-01-01T00:00:00Z".into();
        assert_eq!(check_of(&b), "record");
    }

    #[test]
    fn a_block_byte_and_a_block_signature() {
        let mut b = bundle();
        let block = &mut proof(&mut b).blocks[0];
        let mut decoded =
            common::Block::decode(b64().decode(&block.block).unwrap().as_slice()).unwrap();
        decoded.data.as_mut().unwrap().data[0][40] ^= 1;
        block.block = b64().encode(decoded.encode_to_vec());
        assert_eq!(check_of(&b), "data-hash");

        let mut b = bundle();
        let block = &mut proof(&mut b).blocks[0];
        let mut decoded =
            common::Block::decode(b64().decode(&block.block).unwrap().as_slice()).unwrap();
        decoded.header.as_mut().unwrap().previous_hash[0] ^= 1;
        block.block = b64().encode(decoded.encode_to_vec());
        assert_eq!(check_of(&b), "orderer-signature");
    }

    /// The config block with `edit` applied to its channel group, re-hashed (so the data hash
    /// matches and only the orderer's signature can tell).
    fn edit_config(b: &mut Bundle, edit: impl FnOnce(&mut common::ConfigGroup)) {
        let proof = proof(b);
        let mut block =
            common::Block::decode(b64().decode(&proof.config_block).unwrap().as_slice()).unwrap();
        let data = block.data.as_mut().unwrap();
        let mut envelope = common::Envelope::decode(data.data[0].as_slice()).unwrap();
        let mut payload = common::Payload::decode(envelope.payload.as_slice()).unwrap();
        let mut config = common::ConfigEnvelope::decode(payload.data.as_slice()).unwrap();
        edit(
            config
                .config
                .as_mut()
                .unwrap()
                .channel_group
                .as_mut()
                .unwrap(),
        );
        payload.data = config.encode_to_vec();
        envelope.payload = payload.encode_to_vec();
        data.data[0] = envelope.encode_to_vec();
        let hash = sha256(&data.data.concat()).to_vec();
        block.header.as_mut().unwrap().data_hash = hash;
        proof.config_block = b64().encode(block.encode_to_vec());
    }

    #[test]
    fn a_removed_msp_root() {
        let remove = |g: &mut common::ConfigGroup| {
            let org = g
                .groups
                .get_mut("Application")
                .unwrap()
                .groups
                .get_mut("Org2MSP")
                .unwrap();
            let value = org.values.get_mut("MSP").unwrap();
            let mut config = msp::MspConfig::decode(value.value.as_slice()).unwrap();
            let mut fabric = msp::FabricMspConfig::decode(config.config.as_slice()).unwrap();
            assert!(!fabric.root_certs.is_empty());
            fabric.root_certs.clear();
            config.config = fabric.encode_to_vec();
            value.value = config.encode_to_vec();
        };
        // Re-hashed (the test network's configuration is its genesis block, which nobody
        // signs): Org2's endorser no longer chains to a root of its organisation.
        let mut b = bundle();
        edit_config(&mut b, remove);
        let bytes = serde_json::to_vec(&b).unwrap();
        let failure = verify(&bytes, &Options::default()).unwrap_err();
        assert_eq!(failure.check, "endorser-trust", "{failure}");
        assert!(failure.detail.contains("Org2MSP"), "{failure}");
        // Not re-hashed: the data hash gives it away.
        let mut b = bundle();
        let original = proof(&mut b).config_block.clone();
        edit_config(&mut b, remove);
        let mut block = common::Block::decode(
            b64()
                .decode(&proof(&mut b).config_block)
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        let header = common::Block::decode(b64().decode(&original).unwrap().as_slice())
            .unwrap()
            .header;
        block.header = header;
        proof(&mut b).config_block = b64().encode(block.encode_to_vec());
        let bytes = serde_json::to_vec(&b).unwrap();
        let failure = verify(&bytes, &Options::default()).unwrap_err();
        assert_eq!(failure.check, "config-block", "{failure}");
        assert!(failure.detail.contains("data hash"), "{failure}");
    }

    #[test]
    fn trust_anchors_that_do_not_hold_the_endorsers_ca() {
        // An unrelated CA as the only --trust anchor: the first endorser is not anchored.
        let options = Options {
            trust: vec![include_str!("../../../fixtures/pki/rogue/ca.pem").to_owned()],
            node_key_pem: None,
        };
        let failure = verify(BUNDLE.as_bytes(), &options).unwrap_err();
        assert_eq!(failure.check, "endorser-trust", "{failure}");
        assert!(failure.detail.contains("--trust"), "{failure}");
    }
}
