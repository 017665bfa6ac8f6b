//! `tom verify`: re-read the whole block log and check everything that makes it tamper-evident.
//!
//! For each block, in order: its bytes decode; its number is its position; its
//! `previous_hash` is the SHA-256 of the previous header (zeros for genesis); the node's
//! signature over the header verifies with the node public key; the header's `data_hash` is the
//! hash of its transaction hashes; and each transaction's bytes hash to the header's entry for
//! it. For each transaction: it decodes, its id is `sha256(nonce ‖ creator)`, it appears once
//! in the log, and the creator's signature over the proposal verifies with the creator's
//! certificate. The first failure is reported with its block, transaction and what failed.
//!
//! Then the derived tables, which queries and endorsements read, are checked against a replay of
//! the valid transactions' writes: the world state key by key (version and value hash), the
//! transaction index entry by entry, and the key history as a multiset digest. So editing the
//! state behind the log's back (say, marking a device joined again) is caught too. The replay
//! holds one hash per state key and every transaction id in memory.
//!
//! Verification only reads: it opens the store read-only, so it must run while no node has the
//! store open (stop the gateway first).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, ReadableTable};

use super::codec::{sha256, BlockHeader, Hash, RawBlock, Transaction};
use super::node_key::{public_key_point, PUBLIC_KEY_FILE};
use super::store::{
    decode_versioned, encode_modification, BLOCKS, HISTORY, STATE, STORE_FILE, TX_IDS,
};
use tom_contract::simulation::Version;

/// What an intact log contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blocks checked, genesis included (the log's height).
    pub blocks: u64,
    /// Transactions checked.
    pub transactions: u64,
    /// Of those, recorded invalid (MVCC or phantom conflicts).
    pub invalid_transactions: u64,
    /// Hex SHA-256 of the last block's header: quote it to pin the log's state.
    pub tip_hash: String,
    /// Keys in the world state, each matching the log's replay.
    pub state_keys: u64,
    /// Key-history entries, matching the log's replay.
    pub history_entries: u64,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ledger intact: {} blocks, {} transactions ({} recorded invalid), tip {}; \
             world state ({} keys), key history ({} entries) and transaction index match the log",
            self.blocks,
            self.transactions,
            self.invalid_transactions,
            self.tip_hash,
            self.state_keys,
            self.history_entries
        )
    }
}

/// What failed in a tampered block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TamperKind {
    /// The bytes do not decode as a block or transaction.
    Undecodable(String),
    /// Block number in the header differs from its position in the log, or blocks are missing.
    Numbering { found: u64 },
    /// `previous_hash` is not the hash of the previous block's header.
    HashLink,
    /// The node's signature over the header does not verify.
    BlockSignature,
    /// The header's data hash is not the hash of its transaction hashes.
    DataHash,
    /// The transaction's bytes do not hash to the header's entry (its contents changed).
    TransactionHash,
    /// The block holds a different number of transactions than its header lists.
    TransactionCount { header: usize, body: usize },
    /// The transaction id is not `sha256(nonce ‖ creator)`.
    TransactionId { derived: String },
    /// The id appears earlier in the log.
    DuplicateTransactionId { first_block: u64 },
    /// The creator's signature over the proposal does not verify.
    CreatorSignature(String),
}

impl fmt::Display for TamperKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TamperKind::Undecodable(e) => write!(f, "undecodable bytes: {e}"),
            TamperKind::Numbering { found } => write!(f, "the header says block {found}"),
            TamperKind::HashLink => write!(
                f,
                "previous-hash link broken: it is not the hash of the previous block's header"
            ),
            TamperKind::BlockSignature => write!(f, "the node's block signature does not verify"),
            TamperKind::DataHash => write!(
                f,
                "data hash mismatch: it is not the hash of the listed transaction hashes"
            ),
            TamperKind::TransactionHash => write!(
                f,
                "transaction bytes do not match the hash in the signed header"
            ),
            TamperKind::TransactionCount { header, body } => write!(
                f,
                "the header lists {header} transactions, the block holds {body}"
            ),
            TamperKind::TransactionId { derived } => write!(
                f,
                "transaction id is not sha256(nonce ‖ creator) = {derived}"
            ),
            TamperKind::DuplicateTransactionId { first_block } => {
                write!(f, "transaction id already used in block {first_block}")
            }
            TamperKind::CreatorSignature(e) => write!(f, "creator signature does not verify: {e}"),
        }
    }
}

/// The first tampering found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tampering {
    pub block: u64,
    /// Index of the transaction in the block, when a transaction is at fault.
    pub tx_index: Option<u32>,
    /// Its id, when it could still be read.
    pub tx_id: Option<String>,
    pub kind: TamperKind,
    /// Blocks before this one, all intact.
    pub intact_blocks: u64,
}

impl fmt::Display for Tampering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block {}", self.block)?;
        if let Some(index) = self.tx_index {
            write!(f, ", transaction {index}")?;
        }
        if let Some(tx_id) = &self.tx_id {
            write!(f, " (tx {tx_id})")?;
        }
        write!(
            f,
            ": {} ({} earlier blocks intact)",
            self.kind, self.intact_blocks
        )
    }
}

/// A derived table that disagrees with the block log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexMismatch {
    /// `state`, `history` or `tx_ids`.
    pub table: &'static str,
    /// The first key that differs (empty when only a digest over the table could tell).
    pub key: String,
    pub detail: String,
}

impl fmt::Display for IndexMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "table {}: {}", self.table, self.detail)
        } else {
            write!(
                f,
                "table {}, key {:?}: {}",
                self.table, self.key, self.detail
            )
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The log is not intact.
    #[error("ledger tampered: {0}")]
    Tampered(Box<Tampering>),
    /// The world state, key history or transaction index (what queries and the replay check
    /// read) differs from what the intact block log produces.
    #[error("ledger index tampered: {0}")]
    Index(Box<IndexMismatch>),
    /// The store cannot be read at all.
    #[error("cannot read ledger store {path}: {detail}")]
    Store { path: PathBuf, detail: String },
    /// The node public key cannot be read.
    #[error("cannot read node public key {path}: {detail}")]
    NodeKey { path: PathBuf, detail: String },
}

impl VerifyError {
    /// The tampering, if that is what failed.
    pub fn tampering(&self) -> Option<&Tampering> {
        match self {
            VerifyError::Tampered(t) => Some(t),
            _ => None,
        }
    }
}

/// Verify the block log in `data_dir` with the node public key stored beside it.
pub fn verify(data_dir: &Path) -> Result<VerifyReport, VerifyError> {
    let path = data_dir.join(PUBLIC_KEY_FILE);
    let pem = std::fs::read_to_string(&path).map_err(|e| VerifyError::NodeKey {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    verify_with_public_key(data_dir, &pem)
}

/// Verify the block log in `data_dir` against a node public key (SubjectPublicKeyInfo PEM)
/// obtained out of band.
pub fn verify_with_public_key(
    data_dir: &Path,
    public_key_pem: &str,
) -> Result<VerifyReport, VerifyError> {
    let point = public_key_point(public_key_pem).map_err(|detail| VerifyError::NodeKey {
        path: data_dir.join(PUBLIC_KEY_FILE),
        detail,
    })?;
    let path = data_dir.join(STORE_FILE);
    if !path.exists() {
        return Err(VerifyError::Store {
            path,
            detail: "no such file (is this a tom data directory?)".into(),
        });
    }
    // redb may panic on a store file whose pages were altered behind its back (it trusts its
    // own pages unless asked to check integrity); that is tampering too, so report it rather
    // than crash.
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| verify_store(&path, &point)));
    result.unwrap_or_else(|panic| {
        let detail = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "unknown".into());
        Err(VerifyError::Store {
            path: path.clone(),
            detail: format!("the store file is corrupt (redb failed: {detail})"),
        })
    })
}

fn store_error(path: &Path, e: impl fmt::Display) -> VerifyError {
    VerifyError::Store {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

fn verify_store(path: &Path, node_key: &[u8]) -> Result<VerifyReport, VerifyError> {
    let db = redb::ReadOnlyDatabase::open(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            store_error(path, "the store is open by a running node; stop it first")
        }
        redb::DatabaseError::RepairAborted => store_error(
            path,
            "the store needs repair: it was not closed cleanly (a write failed, e.g. on a full \
             disk, or the process was killed). Verification only reads, so it cannot repair it: \
             start `tom serve` on this data directory once with free space (opening repairs the \
             store and checks the log), stop it, then run tom verify again",
        ),
        e => store_error(path, e),
    })?;
    let txn = db.begin_read().map_err(|e| store_error(path, e))?;
    let blocks = txn.open_table(BLOCKS).map_err(|e| store_error(path, e))?;
    let mut checker = Checker::new(node_key);
    for row in blocks.iter().map_err(|e| store_error(path, e))? {
        let (number, bytes) = row.map_err(|e| store_error(path, e))?;
        checker
            .block(number.value(), bytes.value())
            .map_err(|t| VerifyError::Tampered(Box::new(t)))?;
    }
    if checker.blocks == 0 {
        return Err(store_error(
            path,
            "the block log is empty (not even a genesis block)",
        ));
    }
    check_indexes(path, &txn, &checker)?;
    Ok(VerifyReport {
        state_keys: checker.state.len() as u64,
        history_entries: checker.history.count,
        blocks: checker.blocks,
        transactions: checker.transactions,
        invalid_transactions: checker.invalid,
        tip_hash: hex::encode(checker.previous_hash),
    })
}

/// The file in the data directory recording the last start-up check: height and tip hash,
/// signed by the node key.
pub const CHECKPOINT_FILE: &str = "verified.checkpoint";

const CHECKPOINT_HEADER: &str = "tom verified checkpoint v1";

fn checkpoint_message(height: u64, tip: &Hash) -> String {
    format!(
        "{CHECKPOINT_HEADER}\nheight {height}\ntip {}\n",
        hex::encode(tip)
    )
}

/// The checkpoint in `data_dir`, if there is one the node key signed.
fn read_checkpoint(data_dir: &Path, node_key: &[u8]) -> Option<(u64, Hash)> {
    let text = std::fs::read_to_string(data_dir.join(CHECKPOINT_FILE)).ok()?;
    let mut lines = text.lines();
    if lines.next()? != CHECKPOINT_HEADER {
        return None;
    }
    let height: u64 = lines.next()?.strip_prefix("height ")?.parse().ok()?;
    let tip: Hash = hex::decode(lines.next()?.strip_prefix("tip ")?)
        .ok()?
        .try_into()
        .ok()?;
    let signature = hex::decode(lines.next()?.strip_prefix("signature ")?).ok()?;
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, node_key);
    key.verify(checkpoint_message(height, &tip).as_bytes(), &signature)
        .ok()?;
    Some((height, tip))
}

fn write_checkpoint(
    data_dir: &Path,
    key: &super::node_key::NodeKey,
    height: u64,
    tip: &Hash,
) -> Result<(), String> {
    let message = checkpoint_message(height, tip);
    let signature = key.sign(message.as_bytes()).map_err(|e| e.to_string())?;
    let text = format!("{message}signature {}\n", hex::encode(signature));
    let path = data_dir.join(CHECKPOINT_FILE);
    let temporary = data_dir.join(format!("{CHECKPOINT_FILE}.new"));
    std::fs::write(&temporary, text).map_err(|e| e.to_string())?;
    std::fs::rename(&temporary, &path).map_err(|e| e.to_string())
}

/// What `tom serve` checks before it extends the log, so it never starts on a log that
/// `tom verify` rejects: every block's hash link, node signature, data hash and transaction
/// hashes; and, for the blocks after the last signed checkpoint ([`CHECKPOINT_FILE`]), every
/// transaction's id derivation and creator signature too. The world-state replay is left to
/// `tom verify`. On success the checkpoint moves to the tip, so the next start checks
/// transactions only of the blocks committed since. Returns the number of blocks checked.
pub(super) fn check_at_start(
    db: &redb::Database,
    data_dir: &Path,
    key: &super::node_key::NodeKey,
) -> Result<u64, crate::ledger::LedgerError> {
    use crate::ledger::LedgerError;
    let store = data_dir.join(STORE_FILE);
    let internal = |e: &dyn fmt::Display| {
        LedgerError::Internal(format!("checking the block log {}: {e}", store.display()))
    };
    let point = public_key_point(key.public_key_pem()).map_err(|e| internal(&e))?;
    let checkpoint = read_checkpoint(data_dir, &point);
    let txn = db.begin_read().map_err(|e| internal(&e))?;
    let blocks = match txn.open_table(BLOCKS) {
        Ok(blocks) => blocks,
        // A new store: nothing to check yet.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(internal(&e)),
    };
    // A swapped or foreign node key shows first as a bad signature on every block: say what it is.
    if let Some((number, bytes)) = blocks.last().map_err(|e| internal(&e))? {
        let number = number.value();
        if let Ok(raw) = RawBlock::decode(bytes.value()) {
            if !key.signed(raw.header_bytes, raw.signature) {
                return Err(LedgerError::Internal(format!(
                    "the node key in the data directory did not sign the last block \
                     ({number}); restore the original node.key.pem or run tom verify"
                )));
            }
        }
    }
    let mut checker = Checker::new(&point);
    checker.replay = false;
    checker.transactions_from = checkpoint.map_or(0, |(height, _)| height);
    for row in blocks.iter().map_err(|e| internal(&e))? {
        let (number, bytes) = row.map_err(|e| internal(&e))?;
        if let Some((height, tip)) = checkpoint {
            if number.value() == height && checker.previous_hash != tip {
                return Err(LedgerError::Internal(format!(
                    "the block log {} does not extend the last verified checkpoint (block {}): \
                     blocks before it were replaced; tom serve will not extend it \
                     (run tom verify for the full report)",
                    store.display(),
                    height.saturating_sub(1)
                )));
            }
        }
        checker.block(number.value(), bytes.value()).map_err(|t| {
            LedgerError::Internal(format!(
                "the block log {} fails verification at {t}; tom serve will not extend a log \
                 that tom verify rejects (run tom verify for the full report)",
                store.display()
            ))
        })?;
    }
    if let Some((height, tip)) = checkpoint {
        if checker.blocks == height && checker.previous_hash != tip {
            return Err(LedgerError::Internal(format!(
                "the block log {} does not match the last verified checkpoint (block {}): \
                 blocks were replaced; tom serve will not extend it (run tom verify for the \
                 full report)",
                store.display(),
                height.saturating_sub(1)
            )));
        }
        if checker.blocks < height {
            return Err(LedgerError::Internal(format!(
                "the block log {} has {} blocks but was verified with {height}: blocks were \
                 removed; tom serve will not extend it (run tom verify for the full report)",
                store.display(),
                checker.blocks
            )));
        }
    }
    if checker.blocks > 0 {
        if let Err(e) = write_checkpoint(data_dir, key, checker.blocks, &checker.previous_hash) {
            // Only costs the next start more checking.
            tracing::warn!(error = %e, "cannot write the verified checkpoint");
        }
    }
    Ok(checker.blocks)
}

/// The running state of a verification: what the next block must link to, and every tx id so
/// far.
struct Checker<'k> {
    node_key: ring::signature::UnparsedPublicKey<&'k [u8]>,
    previous_hash: Hash,
    blocks: u64,
    transactions: u64,
    invalid: u64,
    /// Every transaction id: `(block, index, validation code)`, as the `tx_ids` index must say.
    tx_ids: HashMap<String, (u64, u32, u8)>,
    /// The world state the valid transactions produce: key → (version, SHA-256 of the value).
    state: BTreeMap<String, (Version, Hash)>,
    history: MultisetDigest,
    /// Creator certificates already parsed, by their PEM bytes: a few identities sign most
    /// transactions, and parsing X.509 costs more than the signature check.
    certificates: HashMap<Vec<u8>, Result<tom_contract::identity::Certificate, String>>,
    /// Blocks below this number get the block-level checks only (hash link, node signature,
    /// data hash, transaction hashes); their transactions were fully checked before (the
    /// start-up check's signed checkpoint). 0 for `tom verify`.
    transactions_from: u64,
    /// Whether to replay state, history and the transaction index (`tom verify`) or only check
    /// the log (start-up).
    replay: bool,
}

impl<'k> Checker<'k> {
    fn new(node_key: &'k [u8]) -> Self {
        Checker {
            node_key: ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                node_key,
            ),
            previous_hash: [0; 32],
            blocks: 0,
            transactions: 0,
            invalid: 0,
            tx_ids: HashMap::new(),
            state: BTreeMap::new(),
            history: MultisetDigest::default(),
            certificates: HashMap::new(),
            transactions_from: 0,
            replay: true,
        }
    }

    fn block(&mut self, number: u64, bytes: &[u8]) -> Result<(), Tampering> {
        let fail = |kind: TamperKind, tx_index: Option<u32>, tx_id: Option<String>, intact: u64| {
            Tampering {
                block: number,
                tx_index,
                tx_id,
                kind,
                intact_blocks: intact,
            }
        };
        let intact = self.blocks;
        if number != self.blocks {
            // A gap: blocks were deleted from the log.
            return Err(Tampering {
                block: self.blocks,
                tx_index: None,
                tx_id: None,
                kind: TamperKind::Numbering { found: number },
                intact_blocks: intact,
            });
        }
        let raw = RawBlock::decode(bytes)
            .map_err(|e| fail(TamperKind::Undecodable(e.to_string()), None, None, intact))?;
        let header = BlockHeader::decode(raw.header_bytes)
            .map_err(|e| fail(TamperKind::Undecodable(e.to_string()), None, None, intact))?;
        if header.number != number {
            return Err(fail(
                TamperKind::Numbering {
                    found: header.number,
                },
                None,
                None,
                intact,
            ));
        }
        if header.previous_hash != self.previous_hash {
            return Err(fail(TamperKind::HashLink, None, None, intact));
        }
        if self
            .node_key
            .verify(raw.header_bytes, raw.signature)
            .is_err()
        {
            return Err(fail(TamperKind::BlockSignature, None, None, intact));
        }
        if BlockHeader::data_hash_of(&header.tx_hashes) != header.data_hash {
            return Err(fail(TamperKind::DataHash, None, None, intact));
        }
        if header.tx_hashes.len() != raw.transactions.len() {
            return Err(fail(
                TamperKind::TransactionCount {
                    header: header.tx_hashes.len(),
                    body: raw.transactions.len(),
                },
                None,
                None,
                intact,
            ));
        }
        for (index, (bytes, expected)) in raw.transactions.iter().zip(&header.tx_hashes).enumerate()
        {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            // Decode first so that a failure can name the transaction id when it is readable.
            let decoded = Transaction::decode(bytes);
            let tx_id = match &decoded {
                Ok(tx) => Some(tx.proposal.tx_id.clone()),
                Err(_) => Transaction::peek_tx_id(bytes),
            };
            if sha256(bytes) != *expected {
                return Err(fail(
                    TamperKind::TransactionHash,
                    Some(index),
                    tx_id,
                    intact,
                ));
            }
            if number < self.transactions_from {
                continue;
            }
            let tx = decoded.map_err(|e| {
                fail(
                    TamperKind::Undecodable(e.to_string()),
                    Some(index),
                    tx_id.clone(),
                    intact,
                )
            })?;
            let tx_id = tx.proposal.tx_id.clone();
            let derived = tx.proposal.derived_tx_id();
            if derived != tx_id {
                return Err(fail(
                    TamperKind::TransactionId { derived },
                    Some(index),
                    Some(tx_id),
                    intact,
                ));
            }
            let first_block = match self.replay {
                true => self.tx_ids.get(&tx_id).map(|(block, _, _)| *block),
                false => None,
            };
            if let Some(first_block) = first_block {
                return Err(fail(
                    TamperKind::DuplicateTransactionId { first_block },
                    Some(index),
                    Some(tx_id),
                    intact,
                ));
            }
            if let Err(e) = self.creator_signature(&tx) {
                return Err(fail(
                    TamperKind::CreatorSignature(e),
                    Some(index),
                    Some(tx_id),
                    intact,
                ));
            }
            if !self.replay {
                continue;
            }
            if tx.code.is_valid() {
                self.apply(number, index, &tx);
            } else {
                self.invalid += 1;
            }
            self.tx_ids.insert(tx_id, (number, index, tx.code as u8));
        }
        self.transactions += raw.transactions.len() as u64;
        self.previous_hash = sha256(raw.header_bytes);
        self.blocks += 1;
        Ok(())
    }

    /// Replay a valid transaction's writes into the expected world state and history.
    fn apply(&mut self, block: u64, index: u32, tx: &Transaction) {
        let version = Version { block, tx: index };
        for (key, value) in &tx.rwset.writes {
            match value {
                Some(value) => {
                    self.state.insert(key.clone(), (version, sha256(value)));
                }
                None => {
                    self.state.remove(key);
                }
            }
            let modification =
                encode_modification(&tx.proposal.tx_id, tx.proposal.timestamp, value.as_deref());
            self.history.add(key, version, &modification);
        }
    }

    fn creator_signature(&mut self, tx: &Transaction) -> Result<(), String> {
        let pem = &tx.proposal.creator.certificate_pem;
        let certificate = self.certificates.entry(pem.clone()).or_insert_with(|| {
            let text = std::str::from_utf8(pem)
                .map_err(|_| "creator certificate is not PEM text".to_owned())?;
            tom_contract::identity::Certificate::from_pem(text)
                .map_err(|e| format!("creator certificate: {e}"))
        });
        let certificate = certificate.as_ref().map_err(Clone::clone)?;
        if certificate.verify(&tx.proposal_bytes, &tx.creator_signature) {
            Ok(())
        } else {
            Err(format!(
                "not signed by the key of {}",
                certificate.info.subject
            ))
        }
    }
}

/// An order-independent digest of a multiset of history entries: the count and the sum, modulo
/// 2^256 in four 64-bit lanes, of each entry's SHA-256. Holding every entry would cost memory in
/// proportion to all writes ever made; this costs 40 bytes, and the table (sorted by key) and
/// the log (in block order) can be compared without sorting either.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct MultisetDigest {
    count: u64,
    sum: [u64; 4],
}

impl MultisetDigest {
    fn add(&mut self, key: &str, version: Version, modification: &[u8]) {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&(key.len() as u64).to_be_bytes());
        ctx.update(key.as_bytes());
        ctx.update(&version.block.to_be_bytes());
        ctx.update(&version.tx.to_be_bytes());
        ctx.update(modification);
        let digest = ctx.finish();
        let mut carry = 0u64;
        for (lane, chunk) in self.sum.iter_mut().zip(digest.as_ref().chunks(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let (a, c1) = lane.overflowing_add(u64::from_be_bytes(word));
            let (b, c2) = a.overflowing_add(carry);
            *lane = b;
            carry = u64::from(c1) + u64::from(c2);
        }
        self.count += 1;
    }
}

/// Compare the derived tables with what the verified log produces.
fn check_indexes(
    path: &Path,
    txn: &redb::ReadTransaction,
    checker: &Checker<'_>,
) -> Result<(), VerifyError> {
    let mismatch = |table: &'static str, key: &str, detail: String| {
        VerifyError::Index(Box::new(IndexMismatch {
            table,
            key: key.to_owned(),
            detail,
        }))
    };

    // World state: a merge of two sorted sequences.
    let state = txn.open_table(STATE).map_err(|e| store_error(path, e))?;
    let mut expected = checker.state.iter();
    for row in state.iter().map_err(|e| store_error(path, e))? {
        let (key, value) = row.map_err(|e| store_error(path, e))?;
        let key = key.value();
        let found = decode_versioned(key, value.value())
            .map_err(|e| mismatch("state", key, format!("undecodable value: {e}")))?;
        match expected.next() {
            Some((k, _)) if k.as_str() < key => {
                return Err(mismatch(
                    "state",
                    k,
                    "written by the log but missing from the state".into(),
                ));
            }
            Some((k, (version, hash))) if k == key => {
                if *version != found.version {
                    return Err(mismatch(
                        "state",
                        key,
                        format!(
                            "the log wrote it at {version:?}, the state says {:?}",
                            found.version
                        ),
                    ));
                }
                if *hash != sha256(&found.value) {
                    return Err(mismatch(
                        "state",
                        key,
                        "value differs from the one the log wrote".into(),
                    ));
                }
            }
            _ => {
                return Err(mismatch(
                    "state",
                    key,
                    "in the state but never written by the log".into(),
                ))
            }
        }
    }
    if let Some((k, _)) = expected.next() {
        return Err(mismatch(
            "state",
            k,
            "written by the log but missing from the state".into(),
        ));
    }

    // Transaction index: every id where the log has it, and nothing else.
    let tx_ids = txn.open_table(TX_IDS).map_err(|e| store_error(path, e))?;
    let mut indexed = 0usize;
    for row in tx_ids.iter().map_err(|e| store_error(path, e))? {
        let (id, position) = row.map_err(|e| store_error(path, e))?;
        let (id, position) = (id.value(), position.value());
        match checker.tx_ids.get(id) {
            Some(expected) if *expected == position => indexed += 1,
            Some(expected) => {
                return Err(mismatch("tx_ids", id, format!("the log has (block, index, code) {expected:?}, the index says {position:?}")));
            }
            None => return Err(mismatch("tx_ids", id, "indexed but in no block".into())),
        }
    }
    if indexed != checker.tx_ids.len() {
        return Err(mismatch(
            "tx_ids",
            "",
            format!(
                "{} of {} transactions are missing from the index",
                checker.tx_ids.len() - indexed,
                checker.tx_ids.len()
            ),
        ));
    }

    // Key history: compared as a multiset digest.
    let history = txn.open_table(HISTORY).map_err(|e| store_error(path, e))?;
    let mut found = MultisetDigest::default();
    for row in history.iter().map_err(|e| store_error(path, e))? {
        let (key, value) = row.map_err(|e| store_error(path, e))?;
        let (key, block, tx) = key.value();
        found.add(key, Version { block, tx }, value.value());
    }
    if found != checker.history {
        return Err(mismatch(
            "history",
            "",
            format!(
                "{} entries differ from the {} the log produces (count or contents)",
                found.count, checker.history.count
            ),
        ));
    }
    Ok(())
}
