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
//! Then the derived tables, which queries and endorsements read, are checked against the log:
//! each world-state key against its key's last history entry (version and value hash; the
//! history is keyed by the key's hash, so each state key is a point lookup) or, for a key the
//! history holds no entry of (written once, never changed: see `store::record_write`), as the
//! one change the history implies; the history's entries and those implied changes against the
//! valid transactions' writes as a multiset digest (on a mismatch, a second pass over the log
//! names the key); as many keys live in the history as the state holds with entries; and the
//! transaction index by looking each transaction of the log up in it. So editing the state
//! behind the log's back (say, marking a device joined again) is caught too.
//!
//! Memory does not grow with the ledger: blocks are read one at a time, and nothing is kept per
//! transaction or per key. The creator signatures of a block (the bulk of the work) are checked
//! on every core, then the checks run in order, so the first failure is the one a sequential
//! pass would report. `tom serve` at start-up resumes from a node-signed checkpoint
//! ([`CHECKPOINT_FILE`]): only the blocks after it get the per-transaction checks.
//!
//! # Resuming from an auditor's checkpoint
//!
//! The node's own checkpoint is no use to an auditor: the node is the party audited. So after
//! a successful run the auditor signs what it found with their own key
//! ([`AuditorKey::sign_checkpoint`], `tom verify --checkpoint-out`): a DSSE envelope over an
//! in-toto Statement v1, the same envelope and PAE code as the contract's signed claims
//! (`tom_contract::claims`), whose subject is `tom-ledger:<channel>` pinned by the SHA-256 of
//! the last verified block's header and whose predicate ([`CHECKPOINT_PREDICATE`],
//! [`CheckpointPredicate`]) says the height, counts, the key history's multiset digest, the
//! node key the blocks were verified against, when, and with which tool. A standard format, so
//! the auditor's statement can be checked with any DSSE implementation.
//!
//! The next run ([`open_checkpoint`], [`verify_from_checkpoint`], `tom verify --resume`) first
//! checks the envelope with the key the auditor names (refused if the signature does not
//! verify, if it is not this predicate about this ledger, or if it names another node key),
//! then walks the whole log as before, except that for the blocks the checkpoint pins
//! (`0..height`) it checks only what SHA-256 can: each header links to the previous one, its
//! data hash, every transaction's bytes against the header's hash for it, and block
//! `height - 1`'s header hash against the signed one. Together that fixes every pinned byte
//! to what the auditor verified, so no node or creator signature (the ECDSA that makes a full
//! run expensive) is checked again there, and their writes are not replayed: the history digest
//! continues from the checkpoint's. An old block edited later is still caught (its hash no
//! longer matches its header, or its header no longer links: a pinned header's edit shows as a
//! broken link at the block after it, since its own signature is not checked), a log replaced
//! by another one signed with the same node key fails at block `height - 1`, and a log shorter
//! than the checkpoint is refused ([`TamperKind::CheckpointTip`], [`TamperKind::Truncated`]).
//! Blocks from `height` on get every check; the pinned transactions are still decoded and
//! looked up in the transaction index, and the derived tables are checked over the whole
//! store as in a full run (merges and a digest, no signatures). The report says which blocks
//! were pinned, by whose key and when, and how many creator signatures were verified.
//! `cargo run --release -p tom-gateway --example verify_resume` measures the saving (10 000
//! transactions plus 1 % on 2 cores, release: full 1.3–1.45 s, resumed 0.28–0.57 s, the rest
//! being re-hashing and the merge of the derived tables; README has the figures).
//!
//! Verification only reads: it opens the store read-only, so it must run while no node has the
//! store open (stop the gateway first).

use std::fmt;
use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, ReadableTable};

use super::codec::{sha256, BlockHeader, Hash, RawBlock, Transaction};
use super::node_key::{public_key_point, PUBLIC_KEY_FILE};
use super::state_key;
use super::store::{
    decode_versioned, encode_modification, entries_of, expand_block, format_of, key_hash,
    last_stored_block, read_block, unsupported_format, BlockReadError, KeyHash, StoredBlocks,
    BLOCKS, CERTS, FORMAT_VERSION, HISTORY, STATE, STORE_FILE, TX_IDS,
};
use tom_contract::claims::{ClaimError, Envelope, Statement};
use tom_contract::simulation::{Version, DEFAULT_CHANNEL};
use tom_contract::Timestamp;

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
    /// The multiset digest of the key history the log produces (what a checkpoint carries, so
    /// that a resumed run continues it instead of replaying the blocks it pins).
    pub history_digest: HistoryDigest,
    /// Hex of the DER SubjectPublicKeyInfo of the node key the block signatures were checked
    /// against.
    pub node_public_key: String,
    /// Blocks that got every check (signatures included): all of them, or those after the
    /// checkpoint.
    pub fully_checked_blocks: u64,
    /// Creator signatures verified.
    pub creator_signatures: u64,
    /// The auditor's checkpoint this run resumed from, if any.
    pub pinned: Option<PinnedBy>,
}

/// What vouches for the blocks a resumed verification did not re-check in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedBy {
    /// Blocks `0..height` are pinned (the checkpoint's height).
    pub height: u64,
    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo of the key that signed the checkpoint.
    pub signer: String,
    /// When that verification ran (RFC 3339, as the checkpoint says).
    pub verified_at: String,
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
        )?;
        // The trust basis: what was checked now, and what a signed checkpoint vouches for.
        let last = self.blocks.saturating_sub(1);
        let first_full = self.blocks - self.fully_checked_blocks;
        if let Some(pin) = &self.pinned {
            write!(
                f,
                "\nblocks 0..={} pinned by checkpoint signed by {} on {} (headers and \
                 transactions re-hashed, no signature checked)",
                pin.height.saturating_sub(1),
                pin.signer,
                pin.verified_at
            )?;
        }
        if self.fully_checked_blocks == 0 {
            write!(
                f,
                "\nno block after the checkpoint: nothing checked in full"
            )
        } else {
            write!(
                f,
                "\nblocks {first_full}..={last} fully checked ({} creator signatures verified)",
                self.creator_signatures
            )
        }
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
    /// The last block a checkpoint pins has another header hash than the one the checkpoint
    /// signed: this block or one before it was changed since the checkpoint was made.
    CheckpointTip { checkpoint: String, found: String },
    /// The log ends before the checkpoint's height: blocks were removed since it was made.
    Truncated { checkpoint_height: u64 },
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
            TamperKind::CheckpointTip { checkpoint, found } => write!(
                f,
                "its header hash is {found}, the checkpoint pins {checkpoint}: this block or an \
                 earlier one was changed after the checkpoint was signed"
            ),
            TamperKind::Truncated { checkpoint_height } => write!(
                f,
                "the log ends here, but the checkpoint pins {checkpoint_height} blocks: blocks \
                 were removed after it was signed"
            ),
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
    /// An auditor's checkpoint cannot be used: its signature does not verify with the key
    /// given, it is not a verification checkpoint of this ledger, or it was made against
    /// another node key.
    #[error("checkpoint refused: {0}")]
    Checkpoint(String),
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
    verify_dir(data_dir, public_key_pem, None)
}

/// Verify the block log in `data_dir` against a node public key, resuming from an auditor's
/// checkpoint ([`open_checkpoint`]): blocks `0..height` are re-hashed back to genesis (header
/// links, data hashes, every transaction's bytes against its header, and block `height - 1`'s
/// header hash against the checkpoint's), blocks from `height` on get every check, and the
/// derived tables are checked over the whole store as in [`verify`]. Refused when the
/// checkpoint was made against another node key.
pub fn verify_from_checkpoint(
    data_dir: &Path,
    public_key_pem: &str,
    checkpoint: &Checkpoint,
) -> Result<VerifyReport, VerifyError> {
    verify_dir(data_dir, public_key_pem, Some(checkpoint))
}

fn verify_dir(
    data_dir: &Path,
    public_key_pem: &str,
    resume: Option<&Checkpoint>,
) -> Result<VerifyReport, VerifyError> {
    let point = public_key_point(public_key_pem).map_err(|detail| VerifyError::NodeKey {
        path: data_dir.join(PUBLIC_KEY_FILE),
        detail,
    })?;
    let node_public_key = hex::encode(spki_der(&point).map_err(|detail| VerifyError::NodeKey {
        path: data_dir.join(PUBLIC_KEY_FILE),
        detail,
    })?);
    if let Some(checkpoint) = resume {
        if !CHECKPOINT_FORMATS.contains(&checkpoint.predicate.store_format) {
            return Err(VerifyError::Checkpoint(format!(
                "it was made over storage format {}, this tom verifies format {FORMAT_VERSION}: \
                 run a full verification once and write a new checkpoint",
                checkpoint.predicate.store_format
            )));
        }
        if checkpoint.predicate.node_public_key != node_public_key {
            return Err(VerifyError::Checkpoint(format!(
                "it was made against node key {}, this verification uses node key {}: a \
                 checkpoint only vouches for blocks signed by the key it names",
                fingerprint_of_hex(&checkpoint.predicate.node_public_key),
                fingerprint_of_hex(&node_public_key)
            )));
        }
    }
    let path = data_dir.join(STORE_FILE);
    if !path.exists() {
        return Err(VerifyError::Store {
            path,
            detail: "no such file (is this a tom data directory?)".into(),
        });
    }
    // The store alone is the log only once the journal's blocks are in it.
    super::block_journal::check_replayed(data_dir, "run tom verify again").map_err(|detail| {
        VerifyError::Store {
            path: data_dir.join(super::block_journal::JOURNAL_FILE),
            detail,
        }
    })?;
    // redb may panic on a store file whose pages were altered behind its back (it trusts its
    // own pages unless asked to check integrity); that is tampering too, so report it rather
    // than crash.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        verify_store(&path, &point, resume)
    }));
    result
        .unwrap_or_else(|panic| {
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
        .map(|report| VerifyReport {
            node_public_key,
            ..report
        })
}

/// A stored block's canonical bytes; a block that cannot be expanded (a certificate missing
/// from `certs`, damaged stored bytes) is reported as undecodable at that block.
fn expand<C: ReadableTable<&'static [u8], &'static [u8]>>(
    certs: &C,
    number: u64,
    stored: &[u8],
    intact_blocks: u64,
) -> Result<Vec<u8>, Tampering> {
    expand_block(certs, stored).map_err(|e| Tampering {
        block: number,
        tx_index: None,
        tx_id: None,
        kind: TamperKind::Undecodable(e),
        intact_blocks,
    })
}

fn store_error(path: &Path, e: impl fmt::Display) -> VerifyError {
    VerifyError::Store {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

fn verify_store(
    path: &Path,
    node_key: &[u8],
    resume: Option<&Checkpoint>,
) -> Result<VerifyReport, VerifyError> {
    // A small page cache: verification reads each page about once, so a large cache (redb's
    // default is 1 GiB) would only grow the process with the ledger.
    let db = redb::Builder::new()
        .set_cache_size(VERIFY_CACHE_BYTES)
        .open_read_only(path)
        .map_err(|e| {
            match e {
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
    }
        })?;
    match format_of(&db).map_err(|e| store_error(path, e))? {
        Some(FORMAT_VERSION) | None => {}
        Some(old @ (1..=4)) => {
            return Err(store_error(
                path,
                format!(
                "the store has storage format {old} (written by an older tom); this tom verifies \
                     format {FORMAT_VERSION}: start `tom serve` on this data directory once (it \
                     migrates the store in place and checks the log), stop it, then run tom \
                     verify again"
            ),
            ))
        }
        Some(other) => return Err(store_error(path, unsupported_format(other))),
    }
    let txn = db.begin_read().map_err(|e| store_error(path, e))?;
    // The world state's values may be compressed with the store's dictionaries: register them
    // (each checked against its id) before any value is read.
    super::dictionary::load(&txn).map_err(|e| store_error(path, e))?;
    let blocks = txn.open_table(BLOCKS).map_err(|e| store_error(path, e))?;
    let certs = txn.open_table(CERTS).map_err(|e| store_error(path, e))?;
    let tx_ids = txn.open_table(TX_IDS).map_err(|e| store_error(path, e))?;
    let mut checker = Checker::new(node_key);
    checker.tx_index = Some(&tx_ids);
    if let Some(checkpoint) = resume {
        checker.pinned_below = checkpoint.predicate.height;
        checker.history = checkpoint.history.clone();
    }
    let tampered = |t: Tampering| VerifyError::Tampered(Box::new(t));
    for row in StoredBlocks::from(&blocks, 0).map_err(|e| store_error(path, e))? {
        let (number, bytes) = match row {
            Ok(block) => block,
            Err(BlockReadError::Damaged { block, detail }) => {
                return Err(tampered(Tampering {
                    block,
                    tx_index: None,
                    tx_id: None,
                    kind: TamperKind::Undecodable(detail),
                    intact_blocks: checker.blocks,
                }))
            }
            Err(e) => return Err(store_error(path, e)),
        };
        let bytes = expand(&certs, number, &bytes, checker.blocks).map_err(tampered)?;
        checker.block(number, &bytes).map_err(tampered)?;
        if let Some(checkpoint) = resume {
            if checker.blocks == checkpoint.predicate.height {
                checkpoint.check_pinned(&checker)?;
            }
        }
    }
    if let Some(checkpoint) = resume {
        if checker.blocks < checkpoint.predicate.height {
            return Err(tampered(Tampering {
                block: checker.blocks,
                tx_index: None,
                tx_id: None,
                kind: TamperKind::Truncated {
                    checkpoint_height: checkpoint.predicate.height,
                },
                // Consistent among themselves, but none is linked to the header signed.
                intact_blocks: 0,
            }));
        }
    }
    if checker.blocks == 0 {
        return Err(store_error(
            path,
            "the block log is empty (not even a genesis block)",
        ));
    }
    let (state_keys, history_entries) = check_indexes(path, &txn, &checker)?;
    Ok(VerifyReport {
        state_keys,
        history_entries,
        blocks: checker.blocks,
        transactions: checker.transactions,
        invalid_transactions: checker.invalid,
        tip_hash: hex::encode(checker.previous_hash),
        history_digest: checker.history.public(),
        node_public_key: String::new(),
        fully_checked_blocks: checker.blocks - checker.pinned_below.min(checker.blocks),
        creator_signatures: checker.creator_signatures,
        pinned: resume.map(|c| PinnedBy {
            height: c.predicate.height,
            signer: c.signer.clone(),
            verified_at: c.predicate.verified_at.clone(),
        }),
    })
}

/// The storage formats whose checkpoints a run over this format may resume from: the history
/// digest is keyed the same way from format 3 on (format 4 only added value dictionaries and
/// format 5 packed state keys, which change how state keys and values are stored, not what
/// they are).
const CHECKPOINT_FORMATS: std::ops::RangeInclusive<u64> = 3..=FORMAT_VERSION;

/// redb page cache of `tom verify`.
const VERIFY_CACHE_BYTES: usize = 32 << 20;

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
    let certs = txn.open_table(CERTS).map_err(|e| internal(&e))?;
    // A swapped or foreign node key shows first as a bad signature on every block: say what it is.
    // A damaged last block is named by the full check below; here only the key is in question.
    if let Some((number, stored)) = last_stored_block(&blocks).ok().flatten() {
        let bytes = expand_block(&certs, &stored).unwrap_or_default();
        if let Ok(raw) = RawBlock::decode(&bytes) {
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
    for row in StoredBlocks::from(&blocks, 0).map_err(|e| internal(&e))? {
        let (number, bytes) = row.map_err(|e| match e {
            BlockReadError::Damaged { .. } => LedgerError::Internal(format!(
                "the block log {} is damaged at {e}; tom serve will not extend a log that tom \
                 verify rejects (run tom verify for the full report)",
                store.display()
            )),
            BlockReadError::Store(e) => internal(&e),
        })?;
        if let Some((height, tip)) = checkpoint {
            if number == height && checker.previous_hash != tip {
                return Err(LedgerError::Internal(format!(
                    "the block log {} does not extend the last verified checkpoint (block {}): \
                     blocks before it were replaced; tom serve will not extend it \
                     (run tom verify for the full report)",
                    store.display(),
                    height.saturating_sub(1)
                )));
            }
        }
        let fail = |t: Tampering| {
            LedgerError::Internal(format!(
                "the block log {} fails verification at {t}; tom serve will not extend a log \
                 that tom verify rejects (run tom verify for the full report)",
                store.display()
            ))
        };
        let bytes = expand(&certs, number, &bytes, checker.blocks).map_err(fail)?;
        checker.block(number, &bytes).map_err(|t| {
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

// --- the auditor's checkpoint -------------------------------------------------------------------

/// The in-toto predicate type of an auditor's verification checkpoint.
pub const CHECKPOINT_PREDICATE: &str = "urn:tom:predicate:verification-checkpoint:v1";

/// The tool that made a checkpoint, recorded in it.
const TOOL_VERSION: &str = concat!("tom ", env!("CARGO_PKG_VERSION"));

/// The subject name of a checkpoint of the embedded ledger: `tom-ledger:<channel>` (the
/// embedded ledger runs the contract on [`DEFAULT_CHANNEL`]).
pub fn checkpoint_subject() -> String {
    format!("tom-ledger:{DEFAULT_CHANNEL}")
}

/// The key history's multiset digest as a checkpoint carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryDigest {
    /// Entries (writes of valid transactions) so far.
    pub entries: u64,
    /// Hex of the 256-bit sum (four big-endian 64-bit lanes) of the entries' SHA-256.
    pub sum: String,
}

/// The predicate of a verification checkpoint: what the auditor's run found, signed by the
/// auditor. The statement's subject is `tom-ledger:<channel>` pinned by `tip_hash`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointPredicate {
    /// Blocks verified (genesis included): blocks `0..height`.
    pub height: u64,
    /// Hex SHA-256 of block `height - 1`'s header.
    pub tip_hash: String,
    pub transactions: u64,
    pub invalid_transactions: u64,
    /// The key history the verified blocks produce; a resumed run adds the later blocks to it.
    pub history_digest: HistoryDigest,
    /// The storage format the history digest was computed in (its entries are keyed as that
    /// format keys them): a resumed run must be of the same format.
    pub store_format: u64,
    /// Hex of the DER SubjectPublicKeyInfo of the node key the blocks were verified against.
    pub node_public_key: String,
    /// When the verification ran (RFC 3339, UTC).
    pub verified_at: String,
    /// The tool and its version.
    pub tool_version: String,
}

/// `sha256:<hex>` of a DER SubjectPublicKeyInfo: how checkpoints name keys.
fn fingerprint(spki: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha256(spki)))
}

/// The fingerprint of a key given as hex SubjectPublicKeyInfo (as checkpoints carry node keys).
fn fingerprint_of_hex(spki_hex: &str) -> String {
    hex::decode(spki_hex).map_or_else(|_| format!("{spki_hex:?}"), |der| fingerprint(&der))
}

/// The DER SubjectPublicKeyInfo of an uncompressed P-256 point.
fn spki_der(point: &[u8]) -> Result<Vec<u8>, String> {
    use p256::pkcs8::EncodePublicKey;
    let key = p256::PublicKey::from_sec1_bytes(point)
        .map_err(|_| "not an ECDSA P-256 public key".to_owned())?;
    key.to_public_key_der()
        .map(|der| der.as_bytes().to_vec())
        .map_err(|e| e.to_string())
}

/// The auditor's signing key for checkpoints (PKCS#8 ECDSA P-256).
pub struct AuditorKey {
    pair: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    spki: Vec<u8>,
}

impl fmt::Debug for AuditorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditorKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl AuditorKey {
    /// From a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) of an ECDSA P-256 key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<AuditorKey, String> {
        use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
        let key = p256::SecretKey::from_pkcs8_pem(pem)
            .map_err(|e| format!("not a PKCS#8 PEM of an ECDSA P-256 private key: {e}"))?;
        // Re-encoded by p256, the document carries the public key, as ring requires.
        let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
        let rng = ring::rand::SystemRandom::new();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            der.as_bytes(),
            &rng,
        )
        .map_err(|e| format!("not an ECDSA P-256 key: {e}"))?;
        let spki = spki_der(ring::signature::KeyPair::public_key(&pair).as_ref())?;
        Ok(AuditorKey { pair, rng, spki })
    }

    /// `sha256:<hex>` of the public key's DER SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.spki)
    }

    /// A DSSE envelope over an in-toto Statement v1 saying what `report` found, signed by this
    /// key, for [`open_checkpoint`] and [`verify_from_checkpoint`]. `verified_at` is when the
    /// verification ran. The signature's `keyid` is the hex SHA-256 of this key's
    /// SubjectPublicKeyInfo (an auditor need not have a certificate); it is only a hint, the
    /// verifier uses the key it is given.
    pub fn sign_checkpoint(
        &self,
        report: &VerifyReport,
        verified_at: Timestamp,
    ) -> Result<Envelope, String> {
        if report.node_public_key.is_empty() {
            return Err("the report names no node key".into());
        }
        let predicate = CheckpointPredicate {
            height: report.blocks,
            tip_hash: report.tip_hash.clone(),
            transactions: report.transactions,
            invalid_transactions: report.invalid_transactions,
            history_digest: report.history_digest.clone(),
            store_format: FORMAT_VERSION,
            node_public_key: report.node_public_key.clone(),
            verified_at: verified_at.to_rfc3339(),
            tool_version: TOOL_VERSION.to_owned(),
        };
        let statement = Statement::new(
            &checkpoint_subject(),
            &report.tip_hash,
            CHECKPOINT_PREDICATE,
            predicate,
        );
        let keyid = hex::encode(sha256(&self.spki));
        let mut failed = None;
        let envelope = Envelope::sign(&statement, &keyid, |pae| {
            match self.pair.sign(&self.rng, pae) {
                Ok(signature) => signature.as_ref().to_vec(),
                Err(e) => {
                    failed = Some(e);
                    Vec::new()
                }
            }
        })?;
        match failed {
            Some(e) => Err(format!("signing the checkpoint failed: {e}")),
            None => Ok(envelope),
        }
    }
}

/// The key a checkpoint is checked with: the auditor's public key (SubjectPublicKeyInfo PEM) or
/// certificate (its subject key; the certificate is not checked against any CA, the auditor
/// names their own key).
#[derive(Debug, Clone)]
pub struct AuditorPublicKey {
    point: Vec<u8>,
    spki: Vec<u8>,
}

impl AuditorPublicKey {
    /// From `-----BEGIN PUBLIC KEY-----` or `-----BEGIN CERTIFICATE-----` PEM (ECDSA P-256).
    pub fn from_pem(pem: &str) -> Result<AuditorPublicKey, String> {
        let point = if pem.contains("-----BEGIN CERTIFICATE-----") {
            tom_contract::identity::Certificate::from_pem(pem)?.public_key
        } else if pem.contains("-----BEGIN PUBLIC KEY-----") {
            use p256::pkcs8::DecodePublicKey;
            let key = p256::PublicKey::from_public_key_pem(pem)
                .map_err(|e| format!("not an ECDSA P-256 public key: {e}"))?;
            p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key, false)
                .as_bytes()
                .to_vec()
        } else {
            return Err(
                "expected a PEM public key (BEGIN PUBLIC KEY) or certificate (BEGIN CERTIFICATE)"
                    .into(),
            );
        };
        let spki = spki_der(&point)?;
        Ok(AuditorPublicKey { point, spki })
    }

    /// `sha256:<hex>` of the key's DER SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.spki)
    }
}

/// The largest checkpoint file read (its statement is well under a kilobyte).
pub const MAX_CHECKPOINT_BYTES: usize = 64 * 1024;

/// A checkpoint whose signature verified with the auditor's key, ready to resume from. Only
/// [`open_checkpoint`] makes one, and nothing changes it afterwards.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    predicate: CheckpointPredicate,
    signer: String,
    tip: Hash,
    history: MultisetDigest,
}

/// Check a checkpoint (the JSON of its DSSE envelope) with the auditor's key: the signature,
/// that it is an in-toto Statement v1 with [`CHECKPOINT_PREDICATE`] about this ledger
/// ([`checkpoint_subject`]) and that its fields are well-formed. Whether it was made against
/// the right node key is checked by [`verify_from_checkpoint`], which knows the node key.
pub fn open_checkpoint(
    envelope_json: &[u8],
    key: &AuditorPublicKey,
) -> Result<Checkpoint, VerifyError> {
    let refuse = |detail: String| VerifyError::Checkpoint(detail);
    if envelope_json.len() > MAX_CHECKPOINT_BYTES {
        return Err(refuse(format!(
            "it is {} bytes; a checkpoint is a small JSON envelope (at most {MAX_CHECKPOINT_BYTES})",
            envelope_json.len()
        )));
    }
    let envelope: Envelope = serde_json::from_slice(envelope_json)
        .map_err(|e| refuse(format!("not a DSSE envelope (JSON): {e}")))?;
    let signer = key.fingerprint();
    // Opened with any predicate first, so that another statement type is named as such rather
    // than as a missing field.
    let statement = envelope
        .open::<serde_json::Value>(CHECKPOINT_PREDICATE, |pae, signature| {
            tom_contract::identity::verify_p256(&key.point, pae, signature)
        })
        .map_err(|e| match e {
            ClaimError::BadSignature => {
                let hint = match envelope.signatures.first().map(|s| s.keyid.as_str()) {
                    Some(keyid) if !keyid.is_empty() && format!("sha256:{keyid}") != signer => {
                        format!(" (its keyid names key sha256:{keyid})")
                    }
                    _ => String::new(),
                };
                refuse(format!(
                    "its signature does not verify with the auditor key {signer}{hint}: it was \
                     signed by another key, or altered after it was signed"
                ))
            }
            ClaimError::Malformed(detail) => {
                refuse(format!("not a TOM verification checkpoint: {detail}"))
            }
        })?;
    let predicate: CheckpointPredicate = serde_json::from_value(statement.predicate)
        .map_err(|e| refuse(format!("its predicate is malformed: {e}")))?;
    let expected = checkpoint_subject();
    let [subject] = statement.subject.as_slice() else {
        return Err(refuse(format!(
            "it has {} subjects, a checkpoint has one ({expected})",
            statement.subject.len()
        )));
    };
    if subject.name != expected {
        return Err(refuse(format!(
            "it is about {:?}, not this ledger ({expected:?})",
            subject.name
        )));
    }
    if subject.digest.get("sha256") != Some(&predicate.tip_hash) || subject.digest.len() != 1 {
        return Err(refuse(format!(
            "its subject digest {:?} is not {{sha256: tip_hash}} ({})",
            subject.digest, predicate.tip_hash
        )));
    }
    if predicate.height == 0 {
        return Err(refuse("its height is 0: it pins no block".into()));
    }
    let tip: Hash = hex::decode(&predicate.tip_hash)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            refuse(format!(
                "tip_hash {:?} is not 64 hex digits",
                predicate.tip_hash
            ))
        })?;
    let history = MultisetDigest::from_public(&predicate.history_digest).ok_or_else(|| {
        refuse(format!(
            "history_digest.sum {:?} is not 64 hex digits",
            predicate.history_digest.sum
        ))
    })?;
    Ok(Checkpoint {
        predicate,
        signer,
        tip,
        history,
    })
}

impl Checkpoint {
    /// What the auditor signed.
    pub fn predicate(&self) -> &CheckpointPredicate {
        &self.predicate
    }

    /// The fingerprint (`sha256:<hex>` of the SubjectPublicKeyInfo) of the key its signature
    /// verified with.
    pub fn signer(&self) -> &str {
        &self.signer
    }

    /// Once the pinned blocks are re-hashed: the last one's header is the one the auditor
    /// signed, and they hold what the checkpoint says.
    fn check_pinned(&self, checker: &Checker<'_>) -> Result<(), VerifyError> {
        let height = self.predicate.height;
        if checker.previous_hash != self.tip {
            return Err(VerifyError::Tampered(Box::new(Tampering {
                block: height - 1,
                tx_index: None,
                tx_id: None,
                kind: TamperKind::CheckpointTip {
                    checkpoint: self.predicate.tip_hash.clone(),
                    found: hex::encode(checker.previous_hash),
                },
                // The pinned blocks are consistent among themselves, but not the ones signed.
                intact_blocks: 0,
            })));
        }
        let found = (checker.transactions, checker.invalid);
        let said = (
            self.predicate.transactions,
            self.predicate.invalid_transactions,
        );
        if found != said {
            return Err(VerifyError::Checkpoint(format!(
                "blocks 0..={} hold {} transactions ({} invalid), the checkpoint says {} ({}): \
                 it does not describe the blocks it pins",
                height - 1,
                found.0,
                found.1,
                said.0,
                said.1
            )));
        }
        Ok(())
    }
}

/// The running state of a verification: what the next block must link to, and every tx id so
/// far.
struct Checker<'k> {
    node_key: ring::signature::UnparsedPublicKey<&'k [u8]>,
    previous_hash: Hash,
    blocks: u64,
    transactions: u64,
    invalid: u64,
    /// The store's transaction index, looked up for each transaction of the log (`tom verify`),
    /// so the check holds no per-transaction memory.
    tx_index: Option<&'k super::store::TxIndex>,
    /// Transactions found where the index says they are.
    indexed: u64,
    /// The first disagreement between the index and the log, reported once the log itself
    /// has been found intact.
    index_mismatch: Option<IndexMismatch>,
    history: MultisetDigest,
    /// Blocks below this number get the block-level checks only (hash link, node signature,
    /// data hash, transaction hashes); their transactions were fully checked before (the
    /// start-up check's signed checkpoint). 0 for `tom verify`.
    transactions_from: u64,
    /// Whether to replay state, history and the transaction index (`tom verify`) or only check
    /// the log (start-up).
    replay: bool,
    /// Blocks below this number are pinned by an auditor's checkpoint (`tom verify --resume`):
    /// SHA-256 checks only (hash link, data hash, transaction hashes) and the transaction index;
    /// no node or creator signature, and their writes are already in [`Checker::history`] (the
    /// checkpoint's digest). 0 without a checkpoint.
    pinned_below: u64,
    /// Creator signatures verified (the bulk of the work; what a checkpoint saves).
    creator_signatures: u64,
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
            tx_index: None,
            indexed: 0,
            index_mismatch: None,
            history: MultisetDigest::default(),
            transactions_from: 0,
            replay: true,
            pinned_below: 0,
            creator_signatures: 0,
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
        // A pinned block's header is fixed by the hash chain up to the checkpoint's tip, which
        // the auditor's signature covers: its node signature was checked when the checkpoint
        // was made and adds nothing now.
        let pinned = number < self.pinned_below;
        if !pinned
            && self
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
        // The costly per-transaction work (decoding, the creator's ECDSA signature) runs on every
        // core; the checks below then run in order, so the first failure reported is the same
        // as a sequential pass would find.
        let check_signatures = number >= self.transactions_from && !pinned;
        let prepared = par_map(&raw.transactions, |bytes| {
            let decoded = Transaction::decode(bytes);
            let signature = match (&decoded, check_signatures) {
                (Ok(tx), true) => Some(creator_signature(tx)),
                _ => None,
            };
            (decoded, signature)
        });
        self.creator_signatures += prepared.iter().filter(|(_, s)| s.is_some()).count() as u64;
        for (index, ((bytes, expected), (decoded, signature))) in raw
            .transactions
            .iter()
            .zip(&header.tx_hashes)
            .zip(prepared)
            .enumerate()
        {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            // Decoded first so that a failure can name the transaction id when it is readable.
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
            // The start-up check leaves the transactions before its node-signed checkpoint at
            // their hashes; `tom verify` (even resumed) decodes every one, for the index.
            if !self.replay && number < self.transactions_from {
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
                true => self.check_index(&tx_id, number, index, tx.code as u8),
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
            if let Some(Err(e)) = signature {
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
                // A pinned block's writes are in the checkpoint's history digest already.
                if !pinned {
                    self.apply(number, index, &tx);
                }
            } else {
                self.invalid += 1;
            }
        }
        self.transactions += raw.transactions.len() as u64;
        self.previous_hash = sha256(raw.header_bytes);
        self.blocks += 1;
        Ok(())
    }

    /// Where the index says `tx_id` is, against where the log has it. Returns the earlier
    /// block if the index places the id before this position (the log holds it twice);
    /// otherwise a disagreement is kept for [`check_indexes`].
    fn check_index(&mut self, tx_id: &str, block: u64, index: u32, code: u8) -> Option<u64> {
        let table = self.tx_index?;
        let found = match super::store::packed_tx_id(tx_id).map(|packed| table.get(packed)) {
            None => None,
            Some(Ok(found)) => found.map(|g| g.value()),
            Some(Err(e)) => {
                self.mismatch("tx_ids", tx_id, format!("unreadable: {e}"));
                return None;
            }
        };
        match found {
            Some(position) if position == (block, index, code) => {
                self.indexed += 1;
                None
            }
            Some((first, at, _)) if (first, at) < (block, index) => Some(first),
            Some(position) => {
                self.mismatch(
                    "tx_ids",
                    tx_id,
                    format!(
                        "the log has (block, index, code) {:?}, the index says {position:?}",
                        (block, index, code)
                    ),
                );
                None
            }
            None => {
                self.mismatch(
                    "tx_ids",
                    tx_id,
                    format!("in block {block} at index {index} but missing from the index"),
                );
                None
            }
        }
    }

    fn mismatch(&mut self, table: &'static str, key: &str, detail: String) {
        if self.index_mismatch.is_none() {
            self.index_mismatch = Some(IndexMismatch {
                table,
                key: key.to_owned(),
                detail,
            });
        }
    }

    /// Add a valid transaction's writes to the expected key history (the world state is then
    /// checked against the history, see [`check_indexes`]).
    fn apply(&mut self, block: u64, index: u32, tx: &Transaction) {
        let version = Version { block, tx: index };
        for (key, value) in &tx.rwset.writes {
            self.history.add(
                key_hash(key),
                version,
                &encode_modification(value.as_deref()),
            );
        }
    }
}

/// Whether the creator's certificate key signed the proposal. Certificates go through the
/// contract's bounded parse memo: a few identities sign most transactions, and parsing X.509
/// costs more than the signature check.
fn creator_signature(tx: &Transaction) -> Result<(), String> {
    let pem = std::str::from_utf8(&tx.proposal.creator.certificate_pem)
        .map_err(|_| "creator certificate is not PEM text".to_owned())?;
    let certificate = tom_contract::identity::Certificate::from_pem_cached(pem)
        .map_err(|e| format!("creator certificate: {e}"))?;
    if certificate.verify(&tx.proposal_bytes, &tx.creator_signature) {
        Ok(())
    } else {
        Err(format!(
            "not signed by the key of {}",
            certificate.info.subject
        ))
    }
}

/// `f` over `items` on every core (scoped threads over contiguous chunks), results in order.
/// Small inputs stay on this thread: starting threads costs more than a few checks.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || items.len() < 4 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a verification thread panicked"))
            .collect()
    })
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
    fn public(&self) -> HistoryDigest {
        let mut sum = [0u8; 32];
        for (chunk, lane) in sum.chunks_mut(8).zip(self.sum) {
            chunk.copy_from_slice(&lane.to_be_bytes());
        }
        HistoryDigest {
            entries: self.count,
            sum: hex::encode(sum),
        }
    }

    fn from_public(digest: &HistoryDigest) -> Option<MultisetDigest> {
        let bytes: [u8; 32] = hex::decode(&digest.sum).ok()?.try_into().ok()?;
        let mut sum = [0u64; 4];
        for (lane, chunk) in sum.iter_mut().zip(bytes.chunks(8)) {
            *lane = u64::from_be_bytes(chunk.try_into().ok()?);
        }
        Some(MultisetDigest {
            count: digest.entries,
            sum,
        })
    }

    fn add(&mut self, key: KeyHash, version: Version, modification: &[u8]) {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&key.to_be_bytes());
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

/// How many keys the history leaves live (last change not a delete), in one pass over it.
fn live_keys(
    history: &redb::ReadOnlyTable<(KeyHash, u64, u32), &'static [u8]>,
    path: &Path,
) -> Result<u64, VerifyError> {
    let mut live = 0u64;
    let mut current: Option<(KeyHash, bool)> = None;
    let mut close = |group: Option<(KeyHash, bool)>| {
        if let Some((_, true)) = group {
            live += 1;
        }
    };
    for row in history.iter().map_err(|e| store_error(path, e))? {
        let (position, entry) = row.map_err(|e| store_error(path, e))?;
        let (h, _, _) = position.value();
        let is_live = entry.value().first() != Some(&1);
        match &mut current {
            Some((current_hash, state)) if *current_hash == h => *state = is_live,
            _ => {
                close(current.take());
                current = Some((h, is_live));
            }
        }
    }
    close(current);
    Ok(live)
}

/// The first key the log wrote once (no history entries) that the state does not hold as that
/// write left it: the error path of [`check_indexes`] only, a pass over the whole log.
fn contradicted_write_once_key(
    path: &Path,
    txn: &redb::ReadTransaction,
    history: &redb::ReadOnlyTable<(KeyHash, u64, u32), &'static [u8]>,
    state: &redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
) -> Result<Option<(&'static str, String, String)>, VerifyError> {
    let blocks = txn.open_table(BLOCKS).map_err(|e| store_error(path, e))?;
    let certs = txn.open_table(CERTS).map_err(|e| store_error(path, e))?;
    for row in StoredBlocks::from(&blocks, 0).map_err(|e| store_error(path, e))? {
        let Ok((number, stored)) = row else {
            continue;
        };
        let Ok(bytes) = expand_block(&certs, &stored) else {
            continue;
        };
        let Ok(raw) = RawBlock::decode(&bytes) else {
            continue;
        };
        for (index, tx) in raw.transactions.iter().enumerate() {
            let Ok(tx) = Transaction::decode(tx) else {
                continue;
            };
            if !tx.code.is_valid() {
                continue;
            }
            let version = Version {
                block: number,
                tx: index as u32,
            };
            for (key, value) in &tx.rwset.writes {
                let h = key_hash(key);
                let has_entries = history
                    .range(entries_of(h))
                    .map_err(|e| store_error(path, e))?
                    .next()
                    .is_some();
                if has_entries {
                    continue;
                }
                if value.is_none() {
                    // A delete always leaves history entries.
                    return Ok(Some((
                        "history",
                        key.clone(),
                        format!(
                            "the log deleted it at {version:?}, but the history has no entry of it"
                        ),
                    )));
                }
                let current = match state
                    .get(state_key::pack(key).as_slice())
                    .map_err(|e| store_error(path, e))?
                {
                    None => {
                        return Ok(Some((
                            "state",
                            key.clone(),
                            format!("written by the log at {version:?} but missing from the state"),
                        )))
                    }
                    Some(stored) => decode_versioned(key, stored.value()).ok(),
                };
                let agrees = current.as_ref().is_some_and(|c| {
                    c.version == version && Some(c.value.as_slice()) == value.as_deref()
                });
                if !agrees {
                    return Ok(Some((
                        "state",
                        key.clone(),
                        format!("the state differs from the one write the log made of it, at {version:?}"),
                    )));
                }
            }
        }
    }
    Ok(None)
}

/// The first key the history leaves live that the state does not hold, read from the
/// transaction that last wrote it (the error path of [`check_indexes`] only).
fn missing_live_key(
    path: &Path,
    txn: &redb::ReadTransaction,
    history: &redb::ReadOnlyTable<(KeyHash, u64, u32), &'static [u8]>,
    state: &redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
) -> Result<Option<String>, VerifyError> {
    let blocks = txn.open_table(BLOCKS).map_err(|e| store_error(path, e))?;
    let certs = txn.open_table(CERTS).map_err(|e| store_error(path, e))?;
    let mut rows = history.iter().map_err(|e| store_error(path, e))?.peekable();
    while let Some(row) = rows.next() {
        let (position, entry) = row.map_err(|e| store_error(path, e))?;
        let (h, block, tx) = position.value();
        let last_of_key = match rows.peek() {
            Some(Ok((next, _))) => next.value().0 != h,
            _ => true,
        };
        if !last_of_key || entry.value().first() == Some(&1) {
            continue;
        }
        let Ok(Some(bytes)) = read_block(&blocks, &certs, block) else {
            continue;
        };
        let Ok(raw) = RawBlock::decode(&bytes) else {
            continue;
        };
        let Some(Ok(tx)) = raw
            .transactions
            .get(tx as usize)
            .map(|t| Transaction::decode(t))
        else {
            continue;
        };
        for key in tx.rwset.writes.keys() {
            if key_hash(key) == h
                && state
                    .get(state_key::pack(key).as_slice())
                    .map_err(|e| store_error(path, e))?
                    .is_none()
            {
                return Ok(Some(key.clone()));
            }
        }
    }
    Ok(None)
}

/// Compare the derived tables with what the verified log produces, in memory that does not
/// grow with the ledger: the key history as a multiset digest against the log's writes (each
/// entry carries the written value's hash), then the world state against the last history entry
/// of each key (both tables are sorted by key, so this is a merge), then the transaction index
/// (each of the log's transactions was looked up during the log pass; here only the count).
fn check_indexes(
    path: &Path,
    txn: &redb::ReadTransaction,
    checker: &Checker<'_>,
) -> Result<(u64, u64), VerifyError> {
    let mismatch = |table: &'static str, key: &str, detail: String| {
        VerifyError::Index(Box::new(IndexMismatch {
            table,
            key: key.to_owned(),
            detail,
        }))
    };

    // World state: a key with history entries must be at its last entry (a point lookup: the
    // history is ordered by key hash, the state by key); a key without was written once and
    // never changed (`store::record_write`), so its one change is the state's version and value,
    // which joins the history digest. Then the history: its entries and those implied by the
    // state must be, as a multiset, the valid transactions' writes.
    let history = txn.open_table(HISTORY).map_err(|e| store_error(path, e))?;
    let state = txn.open_table(STATE).map_err(|e| store_error(path, e))?;
    let mut found_history = MultisetDigest::default();
    let mut state_keys = 0u64;
    let mut keys_with_entries = 0u64;
    for row in state.iter().map_err(|e| store_error(path, e))? {
        let (stored_key, value) = row.map_err(|e| store_error(path, e))?;
        let key = state_key::unpack(stored_key.value())
            .map_err(|e| mismatch("state", &hex::encode(stored_key.value()), e))?;
        let key = key.as_str();
        let found = decode_versioned(key, value.value())
            .map_err(|e| mismatch("state", key, format!("undecodable value: {e}")))?;
        state_keys += 1;
        let h = key_hash(key);
        let last = history
            .range(entries_of(h))
            .map_err(|e| store_error(path, e))?
            .next_back()
            .transpose()
            .map_err(|e| store_error(path, e))?;
        let Some((position, entry)) = last else {
            found_history.add(h, found.version, &encode_modification(Some(&found.value)));
            continue;
        };
        keys_with_entries += 1;
        let (_, block, tx) = position.value();
        let version = Version { block, tx };
        if entry.value().first() == Some(&1) {
            return Err(mismatch(
                "state",
                key,
                format!("the log deleted it at {version:?}, but it is in the state"),
            ));
        }
        if version != found.version {
            return Err(mismatch(
                "state",
                key,
                format!(
                    "the log wrote it at {version:?}, the state says {:?}",
                    found.version
                ),
            ));
        }
        if entry.value() != encode_modification(Some(&found.value)) {
            return Err(mismatch(
                "state",
                key,
                "value differs from the one the log wrote".into(),
            ));
        }
    }
    let mut entries = 0u64;
    for row in history.iter().map_err(|e| store_error(path, e))? {
        let (key, value) = row.map_err(|e| store_error(path, e))?;
        let (key, block, tx) = key.value();
        found_history.add(key, Version { block, tx }, value.value());
        entries += 1;
    }
    if found_history != checker.history {
        // Name the key if the log can tell (a second pass over the log: only here).
        if let Some((table, key, detail)) =
            contradicted_write_once_key(path, txn, &history, &state)?
        {
            return Err(mismatch(table, &key, detail));
        }
        return Err(mismatch(
            "history",
            "",
            format!(
                "{entries} entries and {} implied by the state differ from the {} writes the log holds (count or contents)",
                found_history.count - entries,
                checker.history.count
            ),
        ));
    }
    let live = live_keys(&history, path)?;
    if live != keys_with_entries {
        // Name a key the log left live that the state lacks (read from the log: only here).
        let missing = missing_live_key(path, txn, &history, &state)?;
        return Err(mismatch(
            "state",
            &missing.unwrap_or_default(),
            format!("written by the log but missing from the state ({live} keys with history live in the log, {keys_with_entries} in the state)"),
        ));
    }
    // Transaction index: every transaction of the log was found where it is; nothing else.
    if let Some(m) = &checker.index_mismatch {
        return Err(VerifyError::Index(Box::new(m.clone())));
    }
    let tx_ids = txn.open_table(TX_IDS).map_err(|e| store_error(path, e))?;
    let entries = redb::ReadableTableMetadata::len(&tx_ids).map_err(|e| store_error(path, e))?;
    if entries != checker.indexed {
        return Err(mismatch(
            "tx_ids",
            "",
            format!(
                "the index has {entries} entries, the log {} transactions",
                checker.indexed
            ),
        ));
    }
    Ok((state_keys, found_history.count))
}
