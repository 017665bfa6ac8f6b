//! The embedded ledger: TOM's default back end, a durable single-machine ledger with Fabric's
//! transaction semantics and a tamper-evident block log.
//!
//! # How a transaction flows
//!
//! 1. **Proposal.** [`EmbeddedLedger::submit`] builds a [`codec::Proposal`] (function, argument,
//!    creator, timestamp, a random nonce and the Fabric-style transaction id
//!    `hex(sha256(nonce ‖ msp_id ‖ certificate))`) and signs its canonical bytes with the
//!    caller's [`SigningIdentity`]. [`EmbeddedLedger::submit_signed`] accepts a proposal signed
//!    elsewhere and checks the id derivation and the signature instead.
//! 2. **Endorsement.** The contract runs in a [`TxSimulator`] over a redb read snapshot
//!    ([`store::Snapshot`]) on the blocking pool, so simulations run concurrently. A contract
//!    rejection ends here: nothing is recorded and the caller gets [`LedgerError::Rejected`].
//!    A transaction id that is already committed is refused here too (replay protection).
//! 3. **Ordering and commit.** One committer thread (the single writer) takes whatever
//!    endorsed transactions are waiting, up to [`EmbeddedOptions::max_block_transactions`], and
//!    cuts them into one block (group commit: while one block is being fsynced, the next one
//!    fills up, so the fsync is paid once per block, not per transaction). Each transaction is
//!    validated in order against committed state plus the earlier transactions of the same block
//!    ([`tom_contract::simulation::validate`]: MVCC and phantom reads). An invalid transaction
//!    is still recorded in the block with its validation code, as Fabric does, but its writes are
//!    not applied and its submitter gets [`LedgerError::Conflict`]. A duplicate transaction id
//!    never enters a block.
//! 4. **Durability.** The block, the state and history it produces and the transaction index
//!    are written in one redb write transaction. The block is appended to the block journal
//!    and synced ([`block_journal`]), the store commit follows without an fsync, and once every
//!    [`EmbeddedOptions::store_sync_interval`] a block's store commit is durable instead (a store
//!    sync, which empties the journal; with no block to carry it, the committer syncs the
//!    store by itself an interval after the last sync). Only then are submitters answered and
//!    [`CommittedEvent`]s broadcast. An acknowledged transaction therefore survives a crash or
//!    restart: opening the ledger replays the journal's blocks past the store's last sync.
//!
//! # The block log
//!
//! Blocks are numbered from the genesis block 0 (no transactions), hash-linked through their
//! headers and signed by the node's key ([`node_key`]); [`codec`] defines every byte. Each
//! transaction carries the creator (MSP id and certificate), function, argument, timestamp,
//! transaction id, nonce, read-write set, response and the creator's signature, so anyone can
//! re-check who asked for what without trusting the node. [`verify`] does exactly that, then
//! replays the valid transactions' writes and checks the world state, key history and
//! transaction index against them.
//!
//! # Files in the data directory
//!
//! * `ledger.redb`: the block log, creator certificates, world state, key history, transaction
//!   index and the storage format version ([`store`]; older formats are migrated on open);
//!   one process at a time (a second open fails with [`LedgerError::Unavailable`]).
//! * `node.key.pem`: the node's block-signing key (PKCS#8 P-256, mode 0600), made on first start.
//! * `node.pub.pem`: its public key, what `tom verify` checks block signatures with (an auditor
//!   may keep a copy elsewhere and use [`verify_with_public_key`]).
//! * `blocks.journal`: the blocks acknowledged since the store's last sync, empty after
//!   a clean stop ([`block_journal`]).
//!
//! # Performance
//!
//! The fsync is amortised by group commit, and between store syncs it is the journal's (one
//! sequential append per block), so throughput is bound by CPU: per transaction one
//! creator signature, the contract's ECDSA verifications and certificate parsing. Simulations run
//! on at most [`EmbeddedOptions::endorsers`] threads so the committer is never starved. The
//! benchmark is `cargo bench -p tom-gateway --bench embedded`; how the ledger behaves as it
//! grows (bytes per record, ingest per slice, query latency, `tom verify`) is
//! `cargo bench -p tom-gateway --bench scale`.
//!
//! # What this module must never do
//!
//! Answer a submitter before its block is durable; apply the writes of an invalid transaction;
//! hold a lock across an `.await`; or change a stored block (blocks are append-only).

pub mod block_journal;
pub mod codec;
mod committer;
mod compaction;
pub mod dictionary;
mod evidence;
mod health;
pub mod node_key;
pub mod state_key;
pub mod store;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::ReadableDatabase;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tom_contract::simulation::{ReadWriteSet, TxSimulator};
use tom_contract::Timestamp;

pub use codec::{BlockHeader, Proposal, Transaction, ValidationCode};
pub use compaction::{compact, CompactReport, RepackedTable};
pub use verify::{
    checkpoint_subject, open_checkpoint, verify, verify_from_checkpoint, verify_with_public_key,
    AuditorKey, AuditorPublicKey, Checkpoint, CheckpointPredicate, HistoryDigest, IndexMismatch,
    PinnedBy, TamperKind, Tampering, VerifyError, VerifyReport, CHECKPOINT_PREDICATE,
    MAX_CHECKPOINT_BYTES,
};

use super::{CommittedEvent, Ledger, LedgerError, Readiness, SigningIdentity, Submitted};
use crate::clock::{self, Clock, TxIdSource};
use committer::{Committer, Message, Ordered};
use health::Shared;
use store::Snapshot;

/// Tuning of the embedded ledger. Every field has a default that suits a 2-core edge gateway.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// At most this many transactions go into one block. Default 1024. Larger blocks amortise
    /// the fsync further but make the submitters of a block wait for all of it.
    pub max_block_transactions: usize,
    /// How long the committer may linger for more transactions when several are waiting
    /// already (a lone transaction is committed at once). Default 0: measured on 2 cores, 1 ms
    /// tripled the block size but cut the committer's CPU per transaction by only ~8% (its cost
    /// is the B-tree pages each transaction dirties, not the commit itself), while adding
    /// latency.
    pub batch_wait: std::time::Duration,
    /// Endorsed transactions that may wait for the committer before submitters are held back
    /// (back-pressure instead of unbounded memory). Default 8192.
    pub queue_capacity: usize,
    /// Whether each block is durable before its submitters are answered. Default `true`; the
    /// gateway never turns it off. `false` exists only so benchmarks can show what the fsync costs.
    pub durable: bool,
    /// How often a block's store commit is durable (a store sync); the blocks in between are
    /// made durable by the block journal ([`block_journal`]), one sequential append and sync
    /// each, and the sync writes back the pages they changed, each once however many blocks
    /// changed it. A sync also comes early once the journal holds 64 MiB, which is what sets
    /// the pace under sustained load, and when no block comes within an interval of the last
    /// sync the committer syncs the store by itself, so the first submitter after a quiet spell
    /// does not wait for the write-back of the burst before it. Default 5 s. Measured with the
    /// scale bench (300,000 records, 2 cores, the same machine and day, three runs each): with 1 s, ingest p99 grew
    /// from 65 to 156 ms as the ledger grew and 17.8 KiB were written per record by the end;
    /// with 5 s (or 15 s, when the 64 MiB bound sets the pace) p99 stayed at 24–35 ms and
    /// 12 KiB were written per record, the store file the same size. The cost: a restart after
    /// a crash replays up to an interval's blocks, at most 64 MiB of them (a full journal, about
    /// 20,000 IdentifyDevice transactions, added 2.0 s to the open: 2.7–3.0 s instead of 0.9 s
    /// on 2 cores, killed with `abort` and reopened, twice). Zero makes every
    /// block a store sync (a durable store commit per block, no journal).
    pub store_sync_interval: std::time::Duration,
    /// Bytes of redb page cache. Default 256 MiB.
    pub cache_size: usize,
    /// Simulations (endorsements and queries) that may run at once. Default: twice the number
    /// of cores. Measured on 2 cores (`cargo bench -p tom-gateway --bench embedded`, 64
    /// submitters, three runs each, `TOM_BENCH_ENDORSERS`): 4 instead of 2 raised IdentifyDevice
    /// from 1,842 to 2,122/s, RecordData from 2,820 to 3,512/s and ExecContract from 4,671 to
    /// 5,403/s, and lowered identify's p99 from ~56 to ~48 ms: while one simulation waits (a
    /// page read, a thread preempted by the committer) another uses the core, and fuller blocks
    /// cut the committer's CPU per transaction (~235 → ~195 µs). 8 gained nothing more and
    /// raised p99 to ~64 ms.
    pub endorsers: usize,
    /// Proposal and block timestamps, and the reference for a signed proposal's clock skew.
    /// Default: the system clock.
    pub clock: Arc<dyn Clock>,
    /// Nonces for the transaction ids of proposals this node signs. Default: the system random
    /// generator; its failure fails the call (503), never yields a zero nonce.
    pub tx_ids: Arc<dyn TxIdSource>,
    /// Values worth compressing (entities, records) the committer samples before it trains the
    /// store's compression dictionary ([`dictionary`]), once. Default 4096 (a few MB, the first
    /// few thousand records); 0 never trains one.
    pub dictionary_samples: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_block_transactions: 1024,
            batch_wait: std::time::Duration::ZERO,
            queue_capacity: 8192,
            durable: true,
            store_sync_interval: std::time::Duration::from_secs(5),
            cache_size: 256 << 20,
            endorsers: 2 * std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            clock: clock::system_clock(),
            tx_ids: clock::system_tx_ids(),
            dictionary_samples: 4096,
        }
    }
}

impl EmbeddedOptions {
    fn check(&self) -> Result<(), LedgerError> {
        if self.max_block_transactions == 0 {
            return Err(LedgerError::Internal(
                "embedded ledger option max_block_transactions must be at least 1".into(),
            ));
        }
        if self.endorsers == 0 {
            return Err(LedgerError::Internal(
                "embedded ledger option endorsers must be at least 1".into(),
            ));
        }
        if self.queue_capacity == 0 {
            return Err(LedgerError::Internal(
                "embedded ledger option queue_capacity must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A transaction simulated against committed state and signed by its creator, not yet ordered.
#[derive(Debug, Clone)]
pub struct Endorsement {
    tx_id: String,
    timestamp: Timestamp,
    rwset: ReadWriteSet,
    response: Vec<u8>,
    /// The rwset's writes in its order, prepared for the store ([`store::PreparedWrite`]).
    prepared: Vec<store::PreparedWrite>,
    /// The transaction's block bytes if it validates ([`codec::encode_tx`]: proposal, creator
    /// signature, rwset, response), and their hash:
    /// computed here, on the endorsing thread, rather than on the single committer thread.
    tx_bytes: Vec<u8>,
    tx_hash: codec::Hash,
}

impl Endorsement {
    pub fn tx_id(&self) -> &str {
        &self.tx_id
    }

    /// The proposal's timestamp (the contract's clock for this transaction).
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// What the transaction read and would write.
    pub fn rwset(&self) -> &ReadWriteSet {
        &self.rwset
    }

    /// The contract's response, as the submitter will get it if the transaction commits.
    pub fn response(&self) -> &[u8] {
        &self.response
    }
}

/// Where a committed transaction id is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxStatus {
    pub block: u64,
    pub index: u32,
    pub code: ValidationCode,
}

/// A stored block, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub header: BlockHeader,
    pub transactions: Vec<Transaction>,
}

/// How a submitted proposal is authenticated before simulation.
enum Signing {
    /// Built here for a caller whose key the gateway holds: sign it.
    Sign(SigningIdentity),
    /// Signed elsewhere: check the id derivation and the signature.
    Check(Vec<u8>),
}

/// The durable embedded ledger. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct EmbeddedLedger {
    data_dir: PathBuf,
    // Mutexes: only so `shutdown(&self)` can take the store, the sender and the thread handle
    // out (releasing the store file for `tom verify` or a restart); each use is a clone or a
    // take, never held across an await. The store itself lives in `shared`, where the committer
    // swaps it when it reopens the file after an I/O error.
    shared: Arc<Shared>,
    orderer: Mutex<Option<mpsc::Sender<Message>>>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    events: broadcast::Sender<CommittedEvent>,
    /// The number of blocks in the log (genesis included), published by the committer.
    height: Arc<AtomicU64>,
    public_key_pem: String,
    /// Bounds the simulations running on the blocking pool (see [`EmbeddedOptions::endorsers`]).
    endorsers: Arc<Semaphore>,
    clock: Arc<dyn Clock>,
    tx_ids: Arc<dyn TxIdSource>,
}

fn store_error(context: &str, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Internal(format!("embedded ledger store: {context}: {e}"))
}

impl EmbeddedLedger {
    /// Open the ledger in `data_dir`, creating the directory, the store (`ledger.redb`) with its
    /// genesis block, and the node key on first start.
    pub fn open(data_dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedLedger, LedgerError> {
        options.check()?;
        std::fs::create_dir_all(data_dir).map_err(|e| {
            LedgerError::Internal(format!(
                "cannot create ledger data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(store::STORE_FILE);
        // A new key only for a new ledger: a log whose key is gone must not be continued under
        // another one (its blocks would no longer verify as one chain).
        let key_path = data_dir.join(node_key::PRIVATE_KEY_FILE);
        if path.exists() && !key_path.exists() {
            return Err(LedgerError::Internal(format!(
                "{} exists but the node key {} is missing; restore it (the log is signed with it)",
                path.display(),
                key_path.display()
            )));
        }
        let key = node_key::NodeKey::load_or_create(data_dir)?;
        let mut db = redb::Builder::new()
            .set_cache_size(options.cache_size)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::Unavailable(format!(
                    "ledger store {} is already open (another tom process?)",
                    path.display()
                )),
                e => LedgerError::Internal(format!(
                    "cannot open ledger store {}: {e}",
                    path.display()
                )),
            })?;
        // An older layout is migrated (a newer one refused) before anything reads the store.
        let format = store::upgrade(&db)
            .map_err(|e| LedgerError::Internal(format!("ledger store {}: {e}", path.display())))?;
        if format != store::FORMAT_VERSION {
            tracing::info!(from = format, to = store::FORMAT_VERSION, store = %path.display(), "ledger store migrated to the current format");
            // The old tables' pages are free now: give them back to the disk rather than keep
            // the file at its old size (redb would reuse them, but an operator migrating for
            // space expects it back).
            let started = std::time::Instant::now();
            let before = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match db.compact() {
                Ok(_) => tracing::info!(
                    bytes_before = before,
                    bytes_after = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                    seconds = started.elapsed().as_secs_f64(),
                    "ledger store compacted after migration"
                ),
                // Not fatal: the store is whole, only larger than it needs to be.
                Err(e) => tracing::warn!(error = %e, "ledger store not compacted after migration"),
            }
        }
        // Blocks acknowledged after the store's last sync are in the block journal: put
        // them back before anything reads the store (a crash, or a stop on a full disk).
        let (mut journal, journalled) =
            block_journal::BlockJournal::open(data_dir).map_err(|e| {
                LedgerError::Internal(format!("block journal in {}: {e}", data_dir.display()))
            })?;
        let in_store = dictionary::load_from(&db)
            .map_err(|e| LedgerError::Internal(format!("ledger store {}: {e}", path.display())))?;
        let replayed = committer::replay_journal(&db, &journalled, &key, in_store.as_deref())?;
        journal.clear().map_err(|e| {
            LedgerError::Internal(format!(
                "cannot empty the block journal in {}: {e}",
                data_dir.display()
            ))
        })?;
        if replayed > 0 {
            tracing::info!(blocks = replayed, "embedded ledger: blocks acknowledged before an unclean stop replayed from the block journal");
        }
        // Never extend a log `tom verify` rejects: check it first (incrementally from the last
        // signed checkpoint for the per-transaction checks).
        let started = std::time::Instant::now();
        let checked = verify::check_at_start(&db, data_dir, &key)?;
        tracing::info!(
            blocks = checked,
            ms = started.elapsed().as_millis() as u64,
            "block log checked"
        );
        let db = Arc::new(db);
        let shared = Arc::new(Shared::new(db.clone()));
        shared.dictionary.set(in_store);
        let height = Arc::new(AtomicU64::new(0));
        let (events, _) = broadcast::channel(4096);
        let committer = Committer::start(
            db,
            shared.clone(),
            path.clone(),
            key,
            &options,
            journal,
            events.clone(),
            height.clone(),
        )?;
        committer.node_key().write_public_key(data_dir)?;
        let public_key_pem = committer.node_key().public_key_pem().to_owned();
        let (sender, receiver) = mpsc::channel(options.queue_capacity);
        let handle = std::thread::Builder::new()
            .name("tom-ledger-commit".into())
            .spawn(move || committer.run(receiver))
            .map_err(|e| {
                LedgerError::Internal(format!("cannot start the committer thread: {e}"))
            })?;
        tracing::info!(dir = %data_dir.display(), height = height.load(Ordering::Acquire), "embedded ledger open");
        Ok(EmbeddedLedger {
            data_dir: data_dir.to_owned(),
            shared,
            orderer: Mutex::new(Some(sender)),
            committer: Mutex::new(Some(handle)),
            events,
            height,
            public_key_pem,
            endorsers: Arc::new(Semaphore::new(options.endorsers)),
            clock: options.clock,
            tx_ids: options.tx_ids,
        })
    }

    /// The store, unless shut down.
    fn db(&self) -> Result<Arc<redb::Database>, LedgerError> {
        self.shared.db()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The id of the dictionary new state values are compressed with, once the store has one
    /// ([`dictionary`]).
    pub fn value_dictionary(&self) -> Option<u64> {
        self.shared.dictionary.get().map(|d| d.id)
    }

    /// The node's block-signing public key (SubjectPublicKeyInfo PEM).
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// The number of blocks in the log, genesis included (Fabric's block height).
    pub fn height(&self) -> u64 {
        self.height.load(Ordering::Acquire)
    }

    /// Simulate a transaction as `identity` without ordering it (Fabric's endorsement).
    pub async fn endorse(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<Endorsement, LedgerError> {
        let creator = identity.creator();
        let (tx_id, nonce) = clock::embedded_tx_id(self.tx_ids.as_ref(), &creator)?;
        let proposal = Proposal {
            tx_id,
            nonce: nonce.to_vec(),
            timestamp: self.clock.now(),
            creator,
            function: function.to_owned(),
            argument: argument.to_vec(),
        };
        self.endorse_proposal(proposal, Signing::Sign(identity.clone()))
            .await
    }

    /// Order and commit an endorsed transaction; returns once its block is durable.
    pub async fn commit(&self, endorsement: Endorsement) -> Result<Submitted, LedgerError> {
        // Clone the sender out of the lock: the lock must not be held across the send's await.
        let sender = self
            .orderer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| LedgerError::Unavailable("the embedded ledger is shut down".into()))?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Message::Order(vec![Ordered { endorsement, reply }]))
            .await
            .map_err(|_| LedgerError::Unavailable("the embedded ledger is shutting down".into()))?;
        answer.await.map_err(|_| {
            LedgerError::Unavailable(
                "the embedded ledger shut down before the transaction was ordered".into(),
            )
        })?
    }

    /// Order several endorsed transactions together: they go into one block, validated in the
    /// given order (a batch is never split, even beyond
    /// [`EmbeddedOptions::max_block_transactions`]).
    pub async fn commit_batch(
        &self,
        endorsements: Vec<Endorsement>,
    ) -> Vec<Result<Submitted, LedgerError>> {
        let sender = self
            .orderer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(sender) = sender else {
            return endorsements
                .iter()
                .map(|_| {
                    Err(LedgerError::Unavailable(
                        "the embedded ledger is shut down".into(),
                    ))
                })
                .collect();
        };
        let mut answers = Vec::with_capacity(endorsements.len());
        let mut batch = Vec::with_capacity(endorsements.len());
        for endorsement in endorsements {
            let (reply, answer) = oneshot::channel();
            batch.push(Ordered { endorsement, reply });
            answers.push(answer);
        }
        // If the send fails the batch is dropped with it, and every answer below reports that.
        let _ = sender.send(Message::Order(batch)).await;
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(answer.await.unwrap_or_else(|_| {
                Err(LedgerError::Unavailable(
                    "the embedded ledger shut down before the transaction was ordered".into(),
                ))
            }));
        }
        results
    }

    /// Submit a proposal signed elsewhere (`signature`: DER ECDSA P-256/SHA-256 by the creator's
    /// certificate key over [`Proposal::encode`]). The transaction id must be derived from the
    /// nonce and creator; a replayed proposal is refused with [`LedgerError::Conflict`].
    pub async fn submit_signed(
        &self,
        proposal: Proposal,
        signature: Vec<u8>,
    ) -> Result<Submitted, LedgerError> {
        let endorsement = self
            .endorse_proposal(proposal, Signing::Check(signature))
            .await?;
        self.commit(endorsement).await
    }

    async fn endorse_proposal(
        &self,
        proposal: Proposal,
        signing: Signing,
    ) -> Result<Endorsement, LedgerError> {
        // After shutdown this refuses early: work that can never be ordered only wastes CPU.
        let db = self.db()?;
        let permit = self.endorser().await?;
        let clock = self.clock.clone();
        let dictionary = self.shared.dictionary.get();
        // The blocking pool: a simulation is CPU-bound (certificate parsing, ECDSA) and reads
        // redb synchronously; running it there lets simulations proceed in parallel without
        // stalling the async workers.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            endorse_blocking(
                &db,
                proposal,
                signing,
                clock.as_ref(),
                dictionary.as_deref(),
            )
        })
        .await
        .map_err(|e| LedgerError::Internal(format!("endorsement task failed: {e}")))?
    }

    async fn endorser(&self) -> Result<tokio::sync::OwnedSemaphorePermit, LedgerError> {
        self.endorsers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| LedgerError::Unavailable("the embedded ledger is shut down".into()))
    }

    /// Where `tx_id` was committed, if it was (valid or not).
    pub fn transaction_status(&self, tx_id: &str) -> Result<Option<TxStatus>, LedgerError> {
        let snapshot = Snapshot::begin(&*self.db()?).map_err(|e| LedgerError::Internal(e.0))?;
        let Some((block, index, code)) = snapshot
            .tx_status(tx_id)
            .map_err(|e| LedgerError::Internal(e.0))?
        else {
            return Ok(None);
        };
        let code = ValidationCode::from_u8(code).ok_or_else(|| {
            LedgerError::Internal(format!(
                "transaction {tx_id} has unknown validation code {code}"
            ))
        })?;
        Ok(Some(TxStatus { block, index, code }))
    }

    /// Block `number`, decoded, if it exists (blocking read; meant for audits and tests).
    pub fn block(&self, number: u64) -> Result<Option<Block>, LedgerError> {
        let txn = self
            .db()?
            .begin_read()
            .map_err(|e| store_error("begin read", e))?;
        let blocks = txn
            .open_table(store::BLOCKS)
            .map_err(|e| store_error("open blocks", e))?;
        let certs = txn
            .open_table(store::CERTS)
            .map_err(|e| store_error("open certs", e))?;
        let Some(bytes) = store::read_block(&blocks, &certs, number)
            .map_err(|e| store_error(&format!("read block {number}"), e))?
        else {
            return Ok(None);
        };
        decode_block(&bytes)
            .map(Some)
            .map_err(|e| LedgerError::Internal(format!("block {number} is undecodable: {e}")))
    }

    /// The chaincode events of valid transactions in blocks `from_block..`, in commit order, as
    /// [`Ledger::subscribe`] delivered them (for resuming a feed after a restart).
    pub fn events_from(&self, from_block: u64) -> Result<Vec<CommittedEvent>, LedgerError> {
        let txn = self
            .db()?
            .begin_read()
            .map_err(|e| store_error("begin read", e))?;
        let blocks = txn
            .open_table(store::BLOCKS)
            .map_err(|e| store_error("open blocks", e))?;
        let certs = txn
            .open_table(store::CERTS)
            .map_err(|e| store_error("open certs", e))?;
        let mut events = Vec::new();
        for row in store::StoredBlocks::from(&blocks, from_block)
            .map_err(|e| store_error("read blocks", e))?
        {
            let (number, bytes) = row.map_err(|e| store_error("read blocks", e))?;
            let bytes = store::expand_block(&certs, &bytes)
                .map_err(|e| store_error(&format!("read block {number}"), e))?;
            let block = decode_block(&bytes).map_err(|e| {
                LedgerError::Internal(format!("block {number} is undecodable: {e}"))
            })?;
            for tx in block.transactions {
                if let (true, Some(event)) = (tx.code.is_valid(), tx.rwset.event) {
                    events.push(CommittedEvent {
                        tx_id: tx.proposal.tx_id,
                        block: number,
                        name: event.name,
                        payload: event.payload,
                    });
                }
            }
        }
        Ok(events)
    }

    /// Stop accepting transactions, let the committer finish the block it is cutting, and wait
    /// for it. Every transaction acknowledged before is durable already; transactions not yet
    /// ordered get [`LedgerError::Unavailable`]. Idempotent; also run on drop.
    pub fn shutdown(&self) {
        let sender = self
            .orderer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            // `try_send` never blocks (this may run inside an async runtime). If the queue is
            // full the committer is draining it, so a retry soon succeeds; if the committer is
            // gone, there is nothing to stop.
            let mut message = Message::Stop;
            loop {
                match sender.try_send(message) {
                    Ok(()) => break,
                    Err(mpsc::error::TrySendError::Full(m)) => {
                        message = m;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
        }
        let handle = self
            .committer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("the embedded ledger's committer thread panicked");
            }
        }
        // The committer has dropped its handle; dropping ours closes the store file unless an
        // endorsement or query still running holds it, until it finishes.
        self.shared
            .shut_down
            .store(true, std::sync::atomic::Ordering::Release);
        drop(
            self.shared
                .db
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
    }
}

impl Drop for EmbeddedLedger {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn decode_block(bytes: &[u8]) -> Result<Block, codec::DecodeError> {
    let raw = codec::RawBlock::decode(bytes)?;
    let header = BlockHeader::decode(raw.header_bytes)?;
    let transactions = raw
        .transactions
        .iter()
        .map(|tx| Transaction::decode(tx))
        .collect::<Result<_, _>>()?;
    Ok(Block {
        header,
        transactions,
    })
}

fn endorse_blocking(
    db: &redb::Database,
    proposal: Proposal,
    signing: Signing,
    clock: &dyn Clock,
    dictionary: Option<&dictionary::ValueDictionary>,
) -> Result<Endorsement, LedgerError> {
    let proposal_bytes = proposal.encode();
    let signature = match signing {
        Signing::Sign(identity) => identity.sign(&proposal_bytes),
        Signing::Check(signature) => {
            check_proposal(&proposal, &proposal_bytes, &signature, clock)?;
            signature
        }
    };
    let snapshot = Snapshot::begin(db).map_err(|e| LedgerError::Internal(e.0))?;
    if let Some((block, index, _)) = snapshot
        .tx_status(&proposal.tx_id)
        .map_err(|e| LedgerError::Internal(e.0))?
    {
        return Err(LedgerError::Conflict {
            tx_id: proposal.tx_id,
            reason: format!(
                "duplicate transaction id: already committed in block {block} at index {index}"
            ),
        });
    }
    let mut simulator = TxSimulator::new(
        &snapshot,
        proposal.tx_id.clone(),
        proposal.timestamp,
        proposal.creator.clone(),
    );
    let response = tom_contract::invoke(&mut simulator, &proposal.function, &[&proposal.argument])?;
    let rwset = simulator.into_rwset();
    let prepared = rwset
        .writes
        .iter()
        .map(|(key, value)| store::PreparedWrite::of(key, value.as_deref(), dictionary))
        .collect();
    let tx_bytes = codec::encode_tx(
        &proposal_bytes,
        &signature,
        &rwset,
        &response,
        ValidationCode::Valid,
    );
    let tx_hash = codec::sha256(&tx_bytes);
    Ok(Endorsement {
        tx_id: proposal.tx_id,
        timestamp: proposal.timestamp,
        rwset,
        response,
        prepared,
        tx_bytes,
        tx_hash,
    })
}

/// How far the timestamp of a proposal signed elsewhere may be from the node's clock.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;

/// A proposal from outside: its id must follow from its nonce and creator (so an id cannot be
/// chosen to collide), its timestamp must be near now, and its signature must verify with the
/// creator's certificate key.
fn check_proposal(
    proposal: &Proposal,
    bytes: &[u8],
    signature: &[u8],
    clock: &dyn Clock,
) -> Result<(), LedgerError> {
    let derived = proposal.derived_tx_id();
    if proposal.tx_id != derived {
        return Err(LedgerError::Rejected {
            status: 400,
            message: format!(
                "transaction id {} is not sha256(nonce ‖ creator) = {derived}",
                proposal.tx_id
            ),
        });
    }
    // The timestamp is the contract's only clock (certificate validity, deadlines): a proposal
    // signed elsewhere may not claim a time far from the node's.
    let skew = (proposal.timestamp.seconds - clock.now().seconds).abs();
    if skew > MAX_CLOCK_SKEW_SECONDS {
        return Err(LedgerError::Rejected {
            status: 400,
            message: format!(
                "proposal timestamp {} is {skew}s away from the node's clock (at most {MAX_CLOCK_SKEW_SECONDS}s allowed)",
                proposal.timestamp
            ),
        });
    }
    let pem = std::str::from_utf8(&proposal.creator.certificate_pem).map_err(|_| {
        LedgerError::Rejected {
            status: 403,
            message: "creator certificate is not PEM text".into(),
        }
    })?;
    let certificate =
        tom_contract::identity::Certificate::from_pem(pem).map_err(|e| LedgerError::Rejected {
            status: 403,
            message: format!("creator certificate: {e}"),
        })?;
    if !certificate.verify(bytes, signature) {
        return Err(LedgerError::Rejected {
            status: 403,
            message: format!(
                "signature over proposal {} does not verify with the key of {}",
                proposal.tx_id, certificate.info.subject
            ),
        });
    }
    Ok(())
}

#[async_trait::async_trait]
impl Ledger for EmbeddedLedger {
    async fn submit(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<Submitted, LedgerError> {
        let endorsement = self.endorse(identity, function, argument).await?;
        self.commit(endorsement).await
    }

    async fn evaluate(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<Vec<u8>, LedgerError> {
        let db = self.db()?;
        let creator = identity.creator();
        let function = function.to_owned();
        let argument = argument.to_vec();
        let permit = self.endorser().await?;
        let (tx_id, _) = clock::embedded_tx_id(self.tx_ids.as_ref(), &creator)?;
        let timestamp = self.clock.now();
        // The blocking pool, for the same reason as endorsements: queries may be CPU-heavy
        // (lineage walks, PROV export) and read redb synchronously.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let snapshot = Snapshot::begin(&db).map_err(|e| LedgerError::Internal(e.0))?;
            let mut simulator = TxSimulator::new(&snapshot, tx_id, timestamp, creator);
            Ok(tom_contract::invoke(
                &mut simulator,
                &function,
                &[&argument],
            )?)
        })
        .await
        .map_err(|e| LedgerError::Internal(format!("query task failed: {e}")))?
    }

    fn subscribe(&self) -> broadcast::Receiver<CommittedEvent> {
        self.events.subscribe()
    }

    async fn replay_after(
        &self,
        block: u64,
        tx_id: &str,
    ) -> Result<Vec<CommittedEvent>, LedgerError> {
        super::events_after(self.events_from(block)?, block, tx_id)
    }

    async fn evidence(
        &self,
        identity: &SigningIdentity,
        query: &tom_contract::requests::LineageQuery,
    ) -> Result<crate::evidence::Bundle, LedgerError> {
        let db = self.db()?;
        let creator = identity.creator();
        let query = query.clone();
        let public_key_pem = self.public_key_pem.clone();
        let permit = self.endorser().await?;
        let now = self.clock.now();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            evidence::build(&db, &public_key_pem, creator, query, now)
        })
        .await
        .map_err(|e| LedgerError::Internal(format!("evidence task failed: {e}")))?
    }

    fn describe(&self) -> String {
        format!("embedded at {}", self.data_dir.display())
    }

    fn readiness(&self) -> Readiness {
        self.shared.readiness(&self.data_dir)
    }
}
