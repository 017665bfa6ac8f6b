//! `tom audit verify-evidence`: check a bundle with nothing but the bundle (and, optionally, the
//! CA certificates and node key the auditor trusts). No network, no data directory.
//!
//! The checks run in a fixed order and the first that fails is reported with its name
//! ([`Failure::check`]) and what it found:
//!
//! | check | what |
//! |---|---|
//! | `format` | the document is a `tom-evidence` bundle of a known version |
//! | `node-key` | the node key parses (and is the pinned one, with `--node-key`) |
//! | `block-header`, `block-sequence` | headers decode and are numbered consecutively |
//! | `block-link` | each header's previous hash is the hash of the header before |
//! | `data-hash` | each header's data hash is the hash of its transaction hashes |
//! | `tip-signature` | the node's signature over the newest header verifies |
//! | `transaction-hash` | each transaction's bytes hash to its header's entry |
//! | `transaction-decode`, `transaction-id` | it decodes; its id is the one listed and `sha256(nonce ‖ creator)` |
//! | `creator-signature` | the creator's signature over the proposal verifies with the certificate in it |
//! | `validation-code` | the ledger committed it VALID |
//! | `creator-trust` | with `--trust`: the creator certificate chains to a trusted CA |
//! | `record`, `record-agent` | each record is the one its transaction wrote, by that creator |
//! | `state` | each state value the query read was written by a bundled transaction |
//! | `lineage`, `prov` | the contract's GetLineage / ExportProv over those values give the bundled documents |
//! | `claim` | each data item's DSSE claim verifies with its signer's certificate |
//!
//! Fabric bundles replace the block and transaction checks with theirs ([`super::fabric`]):
//! `config-block`, `block-decode`, `data-hash`, `orderer-signature`, `transaction-*`,
//! `creator-*`, `validation-code`, `endorsement-signature`, `endorser-trust`, `endorsement-policy`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use tom_contract::transaction::Transaction as _;

use base64::Engine;
use serde_json::Value;
use tom_contract::identity::Certificate;
use tom_contract::ledger::{KeyModification, LedgerError as StubError};
use tom_contract::simulation::{CommittedState, TxSimulator, Version, VersionedValue};
use tom_contract::Creator;

use super::{b64, tx_ids_in, Bundle, EmbeddedProof, LedgerProof, FORMAT, VERSION};
use crate::ledger::embedded::codec::{sha256, BlockHeader, Transaction};
use crate::ledger::embedded::node_key::public_key_point;

/// What the auditor brings: trust anchors.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// CA certificates (PEM) every creator certificate must chain to; none: not checked.
    pub trust: Vec<String>,
    /// The node public key (PEM) the embedded ledger's blocks must be signed with; none: the
    /// bundle's own.
    pub node_key_pem: Option<String>,
}

/// The first check that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub check: &'static str,
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "evidence rejected: {}: {}", self.check, self.detail)
    }
}

impl std::error::Error for Failure {}

pub(crate) fn fail(check: &'static str, detail: impl Into<String>) -> Failure {
    Failure {
        check,
        detail: detail.into(),
    }
}

/// What an intact bundle shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub subject: String,
    /// `embedded` or `fabric`.
    pub ledger: &'static str,
    pub records: usize,
    pub transactions: usize,
    /// Blocks in the proof: the oldest holding a transaction and the newest.
    pub first_block: u64,
    pub tip_block: u64,
    /// Hex SHA-256 of the newest header (embedded) or block header (Fabric).
    pub tip_hash: String,
    /// Who signed the newest block: the node key's SHA-256 (embedded) or the orderer.
    pub tip_signer: String,
    /// The creators (`<msp>/<cn>`) of the transactions.
    pub agents: BTreeSet<String>,
    /// Whether creators were checked against `--trust` anchors.
    pub anchored: bool,
    /// DSSE claims checked.
    pub claims: usize,
    /// Fabric: per transaction, the organisations whose peers endorsed it.
    pub endorsements: BTreeMap<String, BTreeSet<String>>,
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "evidence verified: lineage of {}", self.subject)?;
        writeln!(
            f,
            "  {} records in {} transactions, committed VALID in blocks {}..={} ({} ledger)",
            self.records, self.transactions, self.first_block, self.tip_block, self.ledger
        )?;
        writeln!(
            f,
            "  newest block {} (header sha256 {}) signed by {}",
            self.tip_block, self.tip_hash, self.tip_signer
        )?;
        writeln!(
            f,
            "  creators: {}",
            self.agents.iter().cloned().collect::<Vec<_>>().join(", ")
        )?;
        if !self.endorsements.is_empty() {
            let mut orgs = BTreeSet::new();
            for set in self.endorsements.values() {
                orgs.extend(set.iter().cloned());
            }
            writeln!(
                f,
                "  endorsed by: {}",
                orgs.into_iter().collect::<Vec<_>>().join(", ")
            )?;
        }
        writeln!(
            f,
            "  lineage and PROV-JSON re-derived from the committed values; {} signed claims checked",
            self.claims
        )?;
        if self.ledger == "fabric" {
            write!(
                f,
                "  creators, endorsers and the orderer chain to the MSP roots of the bundled channel \
                 configuration{}",
                if self.anchored {
                    " and to the trusted CAs (--trust)"
                } else {
                    "; pass --trust CA.pem to anchor them to CAs you hold"
                }
            )
        } else if self.anchored {
            write!(f, "  every creator certificate chains to a trusted CA")
        } else {
            write!(
                f,
                "  creator certificates NOT anchored: pass --trust CA.pem to check them against \
                 the organisations' CAs; compare the node key with the operator's published one \
                 (--node-key)"
            )
        }
    }
}

/// A committed transaction as the content checks need it, whichever ledger it came from.
pub(crate) struct CommittedTx {
    pub tx_id: String,
    pub block: u64,
    pub index: u32,
    pub creator: Creator,
    pub certificate: std::sync::Arc<Certificate>,
    pub timestamp: tom_contract::Timestamp,
    pub writes: BTreeMap<String, Option<Vec<u8>>>,
}

/// Verify a bundle's bytes.
pub fn verify(bytes: &[u8], options: &Options) -> Result<Verified, Failure> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| fail("format", format!("not a JSON document: {e}")))?;
    if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(fail("format", format!("not a {FORMAT} bundle")));
    }
    match value.get("version").and_then(Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        other => {
            return Err(fail(
                "format",
                format!("version {other:?} is not supported (this tom reads version {VERSION})"),
            ))
        }
    }
    let bundle: Bundle =
        serde_json::from_value(value).map_err(|e| fail("format", e.to_string()))?;
    verify_bundle(&bundle, options)
}

/// Verify a parsed bundle.
pub fn verify_bundle(bundle: &Bundle, options: &Options) -> Result<Verified, Failure> {
    let (txs, mut verified) = match &bundle.ledger {
        LedgerProof::Embedded(proof) => embedded(proof, options)?,
        LedgerProof::Fabric(proof) => super::fabric::verify_proof(proof, options)?,
    };
    verified.subject = bundle.subject.clone();
    verified.claims = content(bundle, &txs)?;
    verified.records = bundle.records.len();
    Ok(verified)
}

fn decode_b64(check: &'static str, what: &str, text: &str) -> Result<Vec<u8>, Failure> {
    b64()
        .decode(text)
        .map_err(|e| fail(check, format!("{what} is not base64: {e}")))
}

pub(crate) fn parse_certificate(
    check: &'static str,
    tx_id: &str,
    pem: &[u8],
) -> Result<std::sync::Arc<Certificate>, Failure> {
    let text = std::str::from_utf8(pem)
        .map_err(|_| fail(check, format!("tx {tx_id}: creator certificate is not PEM")))?;
    Certificate::from_pem_cached(text)
        .map_err(|e| fail(check, format!("tx {tx_id}: creator certificate: {e}")))
}

pub(crate) fn check_trust(
    options: &Options,
    tx_id: &str,
    who: &str,
    certificate: &Certificate,
    at: tom_contract::Timestamp,
) -> Result<(), Failure> {
    if options.trust.is_empty() {
        return Ok(());
    }
    tom_contract::identity::check_chain(certificate, &options.trust, at).map_err(|e| {
        fail(
            "creator-trust",
            format!("tx {tx_id}: {who} {}: {e}", certificate.info.subject),
        )
    })
}

fn embedded(
    proof: &EmbeddedProof,
    options: &Options,
) -> Result<(Vec<CommittedTx>, Verified), Failure> {
    let point = public_key_point(&proof.node_public_key_pem)
        .map_err(|e| fail("node-key", format!("the bundle's node key: {e}")))?;
    let fingerprint = |p: &[u8]| hex::encode(sha256(p));
    if let Some(pinned) = &options.node_key_pem {
        let pinned =
            public_key_point(pinned).map_err(|e| fail("node-key", format!("--node-key: {e}")))?;
        if pinned != point {
            return Err(fail(
                "node-key",
                format!(
                    "the bundle's node key (sha256 {}) is not the trusted one (sha256 {})",
                    fingerprint(&point),
                    fingerprint(&pinned)
                ),
            ));
        }
    }
    let node_key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &point);

    // The chain of headers, oldest first, ending at the newest block.
    let Some(first) = proof.blocks.first() else {
        return Err(fail("block-header", "the bundle holds no block headers"));
    };
    let mut headers: BTreeMap<u64, BlockHeader> = BTreeMap::new();
    let mut previous: Option<(u64, [u8; 32])> = None;
    for entry in &proof.blocks {
        let bytes = decode_b64(
            "block-header",
            &format!("block {} header", entry.number),
            &entry.header,
        )?;
        let header = BlockHeader::decode(&bytes)
            .map_err(|e| fail("block-header", format!("block {}: {e}", entry.number)))?;
        if header.number != entry.number {
            return Err(fail(
                "block-sequence",
                format!(
                    "the header listed as block {} says block {}",
                    entry.number, header.number
                ),
            ));
        }
        if let Some((number, hash)) = previous {
            if header.number != number + 1 {
                return Err(fail(
                    "block-sequence",
                    format!(
                        "block {} follows block {number}: the chain has a gap",
                        header.number
                    ),
                ));
            }
            if header.previous_hash != hash {
                return Err(fail(
                    "block-link",
                    format!(
                        "block {}'s previous hash is not the hash of block {number}'s header",
                        header.number
                    ),
                ));
            }
        }
        if BlockHeader::data_hash_of(&header.tx_hashes) != header.data_hash {
            return Err(fail(
                "data-hash",
                format!(
                    "block {}: the data hash is not the hash of its transaction hashes",
                    header.number
                ),
            ));
        }
        previous = Some((header.number, sha256(&bytes)));
        if let Some(signature) = &entry.signature {
            let signature = decode_b64(
                "tip-signature",
                &format!("block {} signature", entry.number),
                signature,
            )?;
            if node_key.verify(&bytes, &signature).is_err() {
                return Err(fail(
                    "tip-signature",
                    format!(
                        "the node's signature on block {} does not verify with the node key (sha256 {})",
                        entry.number,
                        fingerprint(&point)
                    ),
                ));
            }
        } else if Some(entry) == proof.blocks.last() {
            return Err(fail(
                "tip-signature",
                format!(
                    "the newest block {} carries no node signature",
                    entry.number
                ),
            ));
        }
        headers.insert(header.number, header);
    }
    let (tip_block, tip_hash) = previous.unwrap_or_default();

    let mut txs = Vec::with_capacity(proof.transactions.len());
    let mut ids = BTreeSet::new();
    let mut agents = BTreeSet::new();
    for entry in &proof.transactions {
        let name = format!(
            "tx {} (block {}, index {})",
            entry.tx_id, entry.block, entry.index
        );
        let bytes = decode_b64("transaction-decode", &name, &entry.bytes)?;
        let Some(header) = headers.get(&entry.block) else {
            return Err(fail(
                "transaction-hash",
                format!("{name}: block {} is not in the bundle's chain", entry.block),
            ));
        };
        match header.tx_hashes.get(entry.index as usize) {
            Some(hash) if *hash == sha256(&bytes) => {}
            Some(_) => {
                return Err(fail(
                    "transaction-hash",
                    format!("{name}: the bytes do not hash to the block header's entry"),
                ))
            }
            None => {
                return Err(fail(
                    "transaction-hash",
                    format!(
                        "{name}: block {} has no transaction {}",
                        entry.block, entry.index
                    ),
                ))
            }
        }
        let tx = Transaction::decode(&bytes)
            .map_err(|e| fail("transaction-decode", format!("{name}: {e}")))?;
        if tx.proposal.tx_id != entry.tx_id {
            return Err(fail(
                "transaction-id",
                format!("{name}: the transaction's id is {}", tx.proposal.tx_id),
            ));
        }
        if tx.proposal.derived_tx_id() != tx.proposal.tx_id {
            return Err(fail(
                "transaction-id",
                format!("{name}: the id is not sha256(nonce ‖ creator)"),
            ));
        }
        if !ids.insert(entry.tx_id.clone()) {
            return Err(fail("transaction-id", format!("{name}: listed twice")));
        }
        let certificate = parse_certificate(
            "creator-signature",
            &entry.tx_id,
            &tx.proposal.creator.certificate_pem,
        )?;
        if !certificate.verify(&tx.proposal_bytes, &tx.creator_signature) {
            return Err(fail(
                "creator-signature",
                format!(
                    "{name}: the signature does not verify with the key of {}",
                    certificate.info.subject
                ),
            ));
        }
        if !tx.code.is_valid() {
            return Err(fail(
                "validation-code",
                format!("{name}: committed {}, not VALID", tx.code.as_str()),
            ));
        }
        check_trust(
            options,
            &entry.tx_id,
            "creator",
            &certificate,
            tx.proposal.timestamp,
        )?;
        agents.insert(certificate.agent(&tx.proposal.creator.msp_id).id);
        txs.push(CommittedTx {
            tx_id: entry.tx_id.clone(),
            block: entry.block,
            index: entry.index,
            creator: tx.proposal.creator,
            certificate,
            timestamp: tx.proposal.timestamp,
            writes: tx.rwset.writes,
        });
    }
    let verified = Verified {
        subject: String::new(),
        ledger: "embedded",
        records: 0,
        transactions: txs.len(),
        first_block: first.number,
        tip_block,
        tip_hash: hex::encode(tip_hash),
        tip_signer: format!("the node key sha256 {}", fingerprint(&point)),
        agents,
        anchored: !options.trust.is_empty(),
        claims: 0,
        endorsements: BTreeMap::new(),
    };
    Ok((txs, verified))
}

/// The state the lineage query read, rebuilt from the bundled transactions' writes.
struct Replay(BTreeMap<String, VersionedValue>);

impl CommittedState for Replay {
    fn get(&self, key: &str) -> Result<Option<VersionedValue>, StubError> {
        Ok(self.0.get(key).cloned())
    }

    fn range(&self, start: &str, end: &str) -> Result<Vec<(String, VersionedValue)>, StubError> {
        let rows: Vec<_> = if end.is_empty() {
            self.0.range(start.to_owned()..).collect()
        } else if end <= start {
            Vec::new()
        } else {
            self.0.range(start.to_owned()..end.to_owned()).collect()
        };
        Ok(rows
            .into_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn history(&self, _key: &str) -> Result<Vec<KeyModification>, StubError> {
        Err(StubError(
            "an evidence bundle carries no key history".into(),
        ))
    }
}

/// Where two JSON documents first differ, as a JSON pointer.
pub(crate) fn first_difference(a: &Value, b: &Value) -> String {
    fn walk(a: &Value, b: &Value, path: &mut String) -> bool {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    match (x.get(k), y.get(k)) {
                        (Some(p), Some(q)) => {
                            if walk(p, q, path) {
                                return true;
                            }
                        }
                        _ => return true,
                    }
                    path.truncate(len);
                }
                false
            }
            (Value::Array(x), Value::Array(y)) => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    if walk(p, q, path) {
                        return true;
                    }
                    path.truncate(len);
                }
                x.len() != y.len()
            }
            _ => a != b,
        }
    }
    let mut path = String::new();
    walk(a, b, &mut path);
    if path.is_empty() {
        "/".into()
    } else {
        path
    }
}

/// The checks every back end shares, on transactions whose commitment is already proved:
/// records, state, lineage, PROV, claims. Returns the number of claims checked.
pub(crate) fn content(bundle: &Bundle, txs: &[CommittedTx]) -> Result<usize, Failure> {
    // Records: exactly one per transaction, the one it wrote.
    let mut records: BTreeMap<&str, &Value> = BTreeMap::new();
    for record in &bundle.records {
        let Some(tx_id) = record.get("tx_id").and_then(Value::as_str) else {
            return Err(fail("record", "a record without a tx_id"));
        };
        if records.insert(tx_id, record).is_some() {
            return Err(fail("record", format!("two records of tx {tx_id}")));
        }
    }
    let by_id: BTreeMap<&str, &CommittedTx> = txs.iter().map(|t| (t.tx_id.as_str(), t)).collect();
    if let Some(orphan) = records.keys().find(|id| !by_id.contains_key(*id)) {
        return Err(fail(
            "record",
            format!("the record of tx {orphan} has no committed transaction in the bundle"),
        ));
    }
    for tx in txs {
        let Some(record) = records.get(tx.tx_id.as_str()) else {
            return Err(fail(
                "record",
                format!("the record of tx {} is missing from the bundle", tx.tx_id),
            ));
        };
        let key = tom_contract::keys::key(tom_contract::keys::RECORD, &[&tx.tx_id])
            .map_err(|e| fail("record", e.0))?;
        let Some(Some(written)) = tx.writes.get(&key) else {
            return Err(fail("record", format!("tx {} wrote no record", tx.tx_id)));
        };
        let written: Value = serde_json::from_slice(written).map_err(|e| {
            fail(
                "record",
                format!("tx {}: its record is not JSON: {e}", tx.tx_id),
            )
        })?;
        if written != **record {
            return Err(fail(
                "record",
                format!(
                    "the record of tx {} is not what the transaction wrote (differs at {})",
                    tx.tx_id,
                    first_difference(&written, record)
                ),
            ));
        }
        let agent = tx.certificate.agent(&tx.creator.msp_id);
        let recorded: Option<tom_contract::model::AgentRef> = record
            .get("agent")
            .and_then(|a| serde_json::from_value(a.clone()).ok());
        let at = record
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(tom_contract::time::parse_rfc3339);
        if at != Some(tx.timestamp) {
            return Err(fail(
                "record-agent",
                format!(
                    "the record of tx {} is dated {at:?}, its transaction {}",
                    tx.tx_id, tx.timestamp
                ),
            ));
        }
        if recorded.as_ref() != Some(&agent) {
            return Err(fail(
                "record-agent",
                format!(
                    "the record of tx {} names agent {:?}, the transaction was signed by {} (certificate sha256 {})",
                    tx.tx_id,
                    recorded.map(|a| a.id),
                    agent.id,
                    agent.certificate_sha256
                ),
            ));
        }
    }

    // State: every value the query read, from the transaction that wrote it.
    let by_position: BTreeMap<(u64, u32), &CommittedTx> =
        txs.iter().map(|t| ((t.block, t.index), t)).collect();
    let mut state = BTreeMap::new();
    for entry in &bundle.state {
        let Some(tx) = by_position.get(&(entry.block, entry.tx)) else {
            return Err(fail(
                "state",
                format!(
                    "key {:?} was read as written by block {} tx {}, which is not in the bundle",
                    entry.key, entry.block, entry.tx
                ),
            ));
        };
        let Some(Some(value)) = tx.writes.get(&entry.key) else {
            return Err(fail(
                "state",
                format!("key {:?}: tx {} did not write it", entry.key, tx.tx_id),
            ));
        };
        state.insert(
            entry.key.clone(),
            VersionedValue {
                value: value.clone(),
                version: Version {
                    block: entry.block,
                    tx: entry.tx,
                },
            },
        );
    }

    // Lineage and PROV, re-derived by the contract from exactly those values.
    let query = &bundle.query;
    let timestamp = tom_contract::time::parse_rfc3339(&query.timestamp)
        .ok_or_else(|| fail("lineage", "the query timestamp is not RFC 3339"))?;
    let creator = Creator {
        msp_id: query.creator_msp_id.clone(),
        certificate_pem: query.creator_certificate_pem.as_bytes().to_vec(),
    };
    let argument =
        serde_json::to_vec(&query.argument).map_err(|e| fail("lineage", e.to_string()))?;
    let replay = Replay(state);
    let mut simulator = TxSimulator::new(&replay, "evidence-verify", timestamp, creator);
    for (function, bundled, check) in [
        (
            tom_contract::requests::GetLineage::NAME,
            &bundle.lineage,
            "lineage",
        ),
        (
            tom_contract::requests::ExportProv::NAME,
            &bundle.prov,
            "prov",
        ),
    ] {
        let derived =
            tom_contract::invoke(&mut simulator, function, &[&argument]).map_err(|e| {
                fail(
                    check,
                    format!(
                        "the contract cannot rebuild it from the bundle's committed values: {e}"
                    ),
                )
            })?;
        let derived: Value =
            serde_json::from_slice(&derived).map_err(|e| fail(check, e.to_string()))?;
        if derived != *bundled {
            return Err(fail(
                check,
                format!(
                    "the bundled document is not what the committed values give (differs at {})",
                    first_difference(&derived, bundled)
                ),
            ));
        }
    }
    let mut named = BTreeSet::new();
    tx_ids_in(&bundle.lineage, &mut named);
    if let Some(missing) = named.iter().find(|id| !by_id.contains_key(id.as_str())) {
        return Err(fail(
            "lineage",
            format!("it names tx {missing}, which is not in the bundle"),
        ));
    }
    claims(&bundle.lineage)
}

/// Check each data item's DSSE claim with the certificate of its signer, when the signer is in
/// the lineage (devices and workloads carry their certificates).
fn claims(lineage: &Value) -> Result<usize, Failure> {
    use tom_contract::model::Entity;
    use tom_contract::queries::LineageNode;
    let Some(nodes) = lineage.get("nodes").and_then(Value::as_object) else {
        return Ok(0);
    };
    let mut certificates: BTreeMap<String, String> = BTreeMap::new();
    let mut data = Vec::new();
    for node in nodes.values() {
        let Ok(node) = serde_json::from_value::<LineageNode>(node.clone()) else {
            continue;
        };
        match node {
            LineageNode::Entity {
                entity: Entity::Device(d),
            } => {
                certificates.insert(d.certificate.sha256.clone(), d.certificate.pem.clone());
            }
            LineageNode::Entity {
                entity: Entity::Container(c),
            } => {
                if let Some(cert) = c.certificate {
                    certificates.insert(cert.sha256.clone(), cert.pem.clone());
                }
            }
            LineageNode::Entity {
                entity: Entity::Data(d),
            } => data.push(d),
            _ => {}
        }
    }
    let mut checked = 0;
    for d in data {
        if d.claim.payload.is_empty() {
            continue;
        }
        let Some(pem) = certificates.get(&d.signer_certificate_sha256) else {
            continue;
        };
        let certificate = Certificate::from_pem_cached(pem)
            .map_err(|e| fail("claim", format!("data {}: signer certificate: {e}", d.id)))?;
        d.claim
            .open::<Value>(
                tom_contract::claims::DATA_GENERATION_PREDICATE,
                |message, signature| certificate.verify(message, signature),
            )
            .map_err(|e| {
                fail(
                    "claim",
                    format!(
                        "data {}: the claim signed by {} does not verify: {e}",
                        d.id, certificate.info.subject
                    ),
                )
            })?;
        checked += 1;
    }
    Ok(checked)
}
