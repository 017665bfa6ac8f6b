//! The single writer of the embedded ledger: orders endorsed transactions into blocks,
//! validates them, and commits each block durably before anyone hears about it.
//!
//! It runs on a dedicated OS thread rather than a tokio task because all of its work is
//! blocking (redb writes and the fsync) and because it must keep draining even while an async
//! runtime is blocked in [`super::EmbeddedLedger::shutdown`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::ReadableTable;
use tokio::sync::{broadcast, mpsc, oneshot};
use tom_contract::simulation::{validate, MvccConflict, Version};

use super::block_journal::BlockJournal;
use super::codec::{sha256, BlockHeader, Hash, RawBlock, Transaction, ValidationCode};
use super::dictionary::{self, ValueDictionary};
use super::health::{classify, io_fault, open_fault, Shared};
use super::node_key::NodeKey;
use super::store::{self, BlockInProgress};
use super::Endorsement;
use crate::clock::Clock;
use crate::ledger::{CommittedEvent, LedgerError, Submitted};

/// An endorsed transaction and where to send its fate.
pub(super) struct Ordered {
    pub endorsement: Endorsement,
    pub reply: oneshot::Sender<Result<Submitted, LedgerError>>,
}

pub(super) enum Message {
    /// Transactions to order into the same block (usually just one; never split).
    Order(Vec<Ordered>),
    /// Finish the block being cut and stop.
    Stop,
}

/// What happened to one transaction of a batch.
enum Outcome {
    Valid,
    Invalid(String),
    Duplicate(String),
}

/// A store error: I/O failures become [`LedgerError::Unavailable`] (see [`classify`]).
fn store_error(context: &str, e: impl Into<redb::Error>) -> LedgerError {
    classify(context, e)
}

pub(super) struct Committer {
    /// `None` only while the store is being reopened after an I/O error.
    db: Option<Arc<redb::Database>>,
    shared: Arc<Shared>,
    path: PathBuf,
    cache_size: usize,
    key: NodeKey,
    durable: bool,
    max_block_transactions: usize,
    batch_wait: std::time::Duration,
    events: broadcast::Sender<CommittedEvent>,
    height: Arc<AtomicU64>,
    /// Block timestamps (the ledger's [`super::EmbeddedOptions::clock`]).
    clock: Arc<dyn Clock>,
    /// The number the next block gets.
    next_number: u64,
    /// SHA-256 of the last block's header bytes.
    tip_hash: Hash,
    /// Samples values for the store's compression dictionary until it has one.
    trainer: dictionary::Trainer,
    /// Where blocks are made durable between store syncs ([`super::block_journal`]); `None`
    /// when commits are not durable at all ([`super::EmbeddedOptions::durable`] off).
    journal: Option<BlockJournal>,
    /// How often a block's store commit is synced (a store sync) rather than journalled.
    store_sync_interval: Duration,
    /// When the store was last synced.
    last_store_sync: Instant,
}

/// The store is synced early once the journal holds this much, so that a restart after a crash
/// never has much to replay.
const JOURNAL_SYNC_BYTES: u64 = 64 << 20;

fn durability(durable: bool) -> redb::Durability {
    if durable {
        redb::Durability::Immediate
    } else {
        redb::Durability::None
    }
}

impl Committer {
    /// Find the tip of the log, writing the genesis block first if the store is new. The
    /// journal's blocks must have been replayed ([`replay_journal`]) and the journal emptied.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        db: Arc<redb::Database>,
        shared: Arc<Shared>,
        path: PathBuf,
        key: NodeKey,
        options: &super::EmbeddedOptions,
        journal: BlockJournal,
        events: broadcast::Sender<CommittedEvent>,
        height: Arc<AtomicU64>,
    ) -> Result<Committer, LedgerError> {
        let (next_number, tip_hash) = open_tip(&db, &key, options.clock.as_ref())?;
        height.store(next_number, Ordering::Release);
        Ok(Committer {
            db: Some(db),
            path,
            cache_size: options.cache_size,
            key,
            durable: options.durable,
            max_block_transactions: options.max_block_transactions,
            batch_wait: options.batch_wait,
            events,
            height,
            clock: options.clock.clone(),
            next_number,
            tip_hash,
            trainer: dictionary::Trainer::new(
                options.dictionary_samples,
                shared.dictionary.get().is_some(),
            ),
            shared,
            journal: options.durable.then_some(journal),
            store_sync_interval: options.store_sync_interval,
            last_store_sync: Instant::now(),
        })
    }

    pub fn node_key(&self) -> &NodeKey {
        &self.key
    }

    pub fn run(mut self, mut queue: mpsc::Receiver<Message>) {
        let _alive = super::health::AliveGuard(self.shared.clone());
        // Only for waiting on the queue with a deadline (an idle store sync is due); the
        // committer's own work stays blocking on this thread.
        let waiter = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| tracing::warn!(error = %e, "embedded ledger: no timer for idle store syncs; the store is synced by the next block instead"))
            .ok();
        let mut stopping = false;
        while !stopping {
            let next = match (&waiter, self.idle_sync_due()) {
                (Some(waiter), Some(due)) => {
                    let due = tokio::time::Instant::from_std(due);
                    // The timer is made inside `block_on`: it needs the waiter's time driver.
                    let next =
                        waiter.block_on(async { tokio::time::timeout_at(due, queue.recv()).await });
                    match next {
                        Ok(next) => next,
                        Err(_idle) => {
                            if self.sync_idle_store() {
                                stopping = self.recover(&mut queue);
                            }
                            continue;
                        }
                    }
                }
                _ => queue.blocking_recv(),
            };
            let Some(first) = next else {
                break;
            };
            let mut batch = Vec::new();
            match first {
                Message::Order(ts) => batch.extend(ts),
                Message::Stop => break,
            }
            // Group commit: take everything already waiting (it queued up while the previous
            // block was being fsynced). If several were waiting, submitters are concurrent:
            // linger up to `batch_wait` while more keep arriving, because each commit costs
            // kernel time (page writes, fsync) whatever its size. A lone transaction never waits.
            stopping = self.drain(&mut queue, &mut batch);
            if !stopping && batch.len() > 1 && !self.batch_wait.is_zero() {
                let deadline = std::time::Instant::now() + self.batch_wait;
                while batch.len() < self.max_block_transactions {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let before = batch.len();
                    std::thread::sleep((deadline - now).min(std::time::Duration::from_micros(250)));
                    stopping = self.drain(&mut queue, &mut batch);
                    if stopping || batch.len() == before {
                        break;
                    }
                }
            }
            if self.commit(batch) && !stopping {
                stopping = self.recover(&mut queue);
            }
        }
        // Whatever is still queued was never ordered: dropping it answers its submitters with
        // "shut down" (their reply channels close), and closing refuses newcomers.
        queue.close();
        // Commits since the last store sync are durable only in the journal (or, with
        // durability off, only in memory): make them durable in the store, so a clean shutdown
        // leaves nothing to replay.
        if !self.durable || self.journal.as_ref().is_some_and(|j| j.bytes() > 0) {
            match self.flush() {
                Ok(()) => self.store_synced(),
                Err(e) => {
                    tracing::error!(error = %e, "embedded ledger: final flush failed (the block journal keeps every acknowledged block; the next start replays it)")
                }
            }
        }
        tracing::info!(
            height = self.next_number,
            "embedded ledger committer stopped"
        );
    }

    /// Move whatever is queued into `batch`, up to a block's worth; true if told to stop.
    fn drain(&self, queue: &mut mpsc::Receiver<Message>, batch: &mut Vec<Ordered>) -> bool {
        while batch.len() < self.max_block_transactions {
            match queue.try_recv() {
                Ok(Message::Order(ts)) => batch.extend(ts),
                Ok(Message::Stop) => return true,
                Err(_) => break,
            }
        }
        false
    }

    /// When the store must be synced if no block comes first: one interval after the last
    /// store sync, while the journal holds blocks. Under load a block is the sync
    /// ([`Committer::write_block`]); this is for the quiet after a burst, so that the next
    /// submitter does not wait for the burst's write-back and a crash meanwhile has little to
    /// replay.
    fn idle_sync_due(&self) -> Option<Instant> {
        let journal = self.journal.as_ref()?;
        self.db.as_ref()?;
        (journal.bytes() > 0).then(|| self.last_store_sync + self.store_sync_interval)
    }

    /// Sync the store while no block is waiting (see [`Committer::idle_sync_due`]), then empty
    /// the journal. Returns true if the store failed with an I/O error and must be reopened
    /// ([`Committer::recover`], which replays the journal).
    fn sync_idle_store(&mut self) -> bool {
        match self.flush() {
            Ok(()) => {
                self.store_synced();
                false
            }
            Err(e) => {
                tracing::error!(error = %e, store = %self.path.display(), "embedded ledger: idle store sync failed; the block journal keeps every acknowledged block");
                // Not before another interval, whatever the fault.
                self.last_store_sync = Instant::now();
                match e {
                    LedgerError::Unavailable(message) => {
                        self.shared.set_fault(Some(message));
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    /// After a durable store commit: every journalled block is in the store now, so the journal
    /// is emptied and the store sync interval starts again.
    fn store_synced(&mut self) {
        if let Some(journal) = &mut self.journal {
            self.last_store_sync = Instant::now();
            if let Err(e) = journal.clear() {
                tracing::warn!(error = %e, "embedded ledger: the block journal was not emptied (its blocks are skipped on replay)");
            }
        }
    }

    /// An empty durable commit: persists every earlier non-durable one.
    fn flush(&self) -> Result<(), LedgerError> {
        let Some(db) = &self.db else {
            return Ok(());
        };
        let mut wtx = db
            .begin_write()
            .map_err(|e| store_error("begin write", e))?;
        wtx.set_durability(redb::Durability::Immediate)
            .map_err(|e| store_error("durability", e))?;
        wtx.commit().map_err(|e| store_error("commit", e))
    }

    /// Commit `batch` as one block and answer its submitters. Returns true if the store failed
    /// with an I/O error and must be reopened ([`Committer::recover`]).
    fn commit(&mut self, batch: Vec<Ordered>) -> bool {
        let outcomes = match self.write_block(&batch) {
            Ok(outcomes) => outcomes,
            Err(e) => {
                let storage_fault = matches!(e, LedgerError::Unavailable(_));
                tracing::error!(error = %e, store = %self.path.display(), block = self.next_number, transactions = batch.len(), "embedded ledger: block commit failed; nothing of it was recorded");
                if storage_fault {
                    // Published before anyone is answered, so a retry that follows the answer
                    // meets the same reason instead of redb's "previous I/O error".
                    if let LedgerError::Unavailable(message) = &e {
                        self.shared.set_fault(Some(message.clone()));
                    }
                }
                for ordered in batch {
                    let _ = ordered.reply.send(Err(e.clone()));
                }
                return storage_fault;
            }
        };
        let block = self.next_number - 1;
        for (ordered, outcome) in batch.into_iter().zip(outcomes) {
            let Endorsement {
                tx_id,
                rwset,
                response,
                ..
            } = ordered.endorsement;
            let result = match outcome {
                Outcome::Valid => {
                    if let Some(event) = rwset.event {
                        // No subscribers is fine: the event is in the block either way.
                        let _ = self.events.send(CommittedEvent {
                            tx_id: tx_id.clone(),
                            block,
                            name: event.name,
                            payload: event.payload,
                        });
                    }
                    Ok(Submitted {
                        tx_id,
                        block,
                        response,
                    })
                }
                Outcome::Invalid(reason) => Err(LedgerError::Conflict {
                    tx_id,
                    reason: format!("invalidated in block {block}: {reason}"),
                }),
                Outcome::Duplicate(reason) => Err(LedgerError::Conflict { tx_id, reason }),
            };
            // The submitter may have gone away (request cancelled); the outcome stands.
            let _ = ordered.reply.send(result);
        }
        false
    }

    /// After an I/O error: close the store, reopen it (redb repairs it on open) and re-read the
    /// tip of the log, retrying with backoff; meanwhile every submission is answered with the
    /// fault (503, nothing recorded). Returns true if told to stop meanwhile.
    fn recover(&mut self, queue: &mut mpsc::Receiver<Message>) -> bool {
        // Nobody may begin new work on the failed handle; those still holding it (endorsements,
        // queries) fail fast and let go.
        drop(
            self.shared
                .db
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
        let failed = self.db.take();
        let mut failed = failed.map(|db| (db, Instant::now()));
        let mut delay = Duration::from_millis(20);
        let mut attempts = 0u32;
        loop {
            // Release our handle once it is the last one (redb's file lock is per handle).
            if let Some((db, since)) = failed.take() {
                match Arc::try_unwrap(db) {
                    Ok(db) => drop(db),
                    Err(db) if since.elapsed() < Duration::from_secs(30) => {
                        failed = Some((db, since))
                    }
                    Err(db) => {
                        // A reader that never lets go (a stuck event replay): do not wait forever;
                        // the open below keeps failing with "already open" until it does.
                        tracing::warn!(
                            "embedded ledger: the failed store handle is still in use after 30 s"
                        );
                        drop(db);
                    }
                }
            }
            if failed.is_none() {
                attempts += 1;
                match self.reopen() {
                    Ok(()) => {
                        self.shared.set_fault(None);
                        tracing::info!(store = %self.path.display(), height = self.next_number, attempts, "embedded ledger: store reopened; committing again");
                        return false;
                    }
                    Err(e) => {
                        if let LedgerError::Unavailable(message) = &e {
                            self.shared.set_fault(Some(message.clone()));
                        }
                        if attempts == 1 || attempts.is_power_of_two() {
                            tracing::warn!(error = %e, store = %self.path.display(), attempts, "embedded ledger: cannot reopen the store yet; retrying");
                        }
                    }
                }
            }
            // Back off, answering whatever arrives meanwhile.
            let until = Instant::now() + delay;
            loop {
                while let Ok(message) = queue.try_recv() {
                    match message {
                        Message::Order(batch) => {
                            let fault = self.shared.db().err().unwrap_or_else(|| {
                                LedgerError::Unavailable(
                                    "ledger storage is being reopened; nothing was recorded".into(),
                                )
                            });
                            for ordered in batch {
                                let _ = ordered.reply.send(Err(fault.clone()));
                            }
                        }
                        Message::Stop => return true,
                    }
                }
                let now = Instant::now();
                if now >= until {
                    break;
                }
                std::thread::sleep((until - now).min(Duration::from_millis(10)));
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Open the store again and continue from its tip.
    fn reopen(&mut self) -> Result<(), LedgerError> {
        let db = redb::Builder::new()
            .set_cache_size(self.cache_size)
            .create(&self.path)
            .map_err(|e| match open_fault(&e) {
                Some(message) => LedgerError::Unavailable(message),
                None => LedgerError::Unavailable(format!(
                    "ledger storage is being reopened after an I/O error ({e}); nothing was recorded"
                )),
            })?;
        // Commits since the last store sync were not durable in the store: reopening dropped
        // them, and the journal brings them back.
        let in_store = dictionary::load_from(&db).map_err(LedgerError::Internal)?;
        if self.journal.is_some() {
            let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
            let (mut journal, blocks) = BlockJournal::open(dir).map_err(|e| match e {
                super::block_journal::JournalError::Io(io) => {
                    LedgerError::Unavailable(io_fault(&io))
                }
                e => LedgerError::Internal(format!("block journal: {e}")),
            })?;
            let replayed = replay_journal(&db, &blocks, &self.key, in_store.as_deref())?;
            journal
                .clear()
                .map_err(|e| LedgerError::Unavailable(io_fault(&e)))?;
            if replayed > 0 {
                tracing::info!(
                    blocks = replayed,
                    "embedded ledger: journalled blocks replayed into the reopened store"
                );
            }
            self.journal = Some(journal);
            self.last_store_sync = Instant::now();
        }
        let (next_number, tip_hash) = open_tip(&db, &self.key, self.clock.as_ref())?;
        // A block whose commit reported an error may still have stored a dictionary.
        if in_store.is_some() {
            self.trainer = dictionary::Trainer::new(0, true);
            self.shared.dictionary.set(in_store);
        }
        if next_number != self.next_number {
            // Every block before next_number was acknowledged; a block beyond it is one whose
            // commit reported an error although it reached the disk.
            tracing::error!(
                expected = self.next_number,
                found = next_number,
                "embedded ledger: the reopened store's height differs from the committer's"
            );
        }
        self.next_number = next_number;
        self.tip_hash = tip_hash;
        self.height.store(next_number, Ordering::Release);
        let db = Arc::new(db);
        *self
            .shared
            .db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(db.clone());
        self.db = Some(db);
        Ok(())
    }

    /// Validate the batch, write it as one block and commit durably. On success the tip has
    /// moved (`next_number - 1` is the new block) unless no transaction entered a block.
    fn write_block(&mut self, batch: &[Ordered]) -> Result<Vec<Outcome>, LedgerError> {
        let number = self.next_number;
        let db = self.db.clone().ok_or_else(|| {
            LedgerError::Unavailable(
                "ledger storage is being reopened; nothing was recorded".into(),
            )
        })?;
        let mut wtx = db
            .begin_write()
            .map_err(|e| store_error("begin write", e))?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut transactions = Vec::with_capacity(batch.len());
        let mut tx_hashes = Vec::with_capacity(batch.len());
        let header_bytes;
        let block;
        {
            let mut tables = BlockTables::open(&wtx)?;
            let mut in_block = HashSet::with_capacity(batch.len());
            for Ordered { endorsement: e, .. } in batch {
                let tx_id = e.tx_id.as_str();
                if !in_block.insert(tx_id) {
                    outcomes.push(Outcome::Duplicate(format!(
                        "duplicate transaction id: submitted twice to block {number}"
                    )));
                    continue;
                }
                let packed_tx_id = store::packed_tx_id(tx_id).ok_or_else(|| {
                    LedgerError::Internal(format!(
                        "transaction id {tx_id:?} is not 64 hex digits (accepted by mistake)"
                    ))
                })?;
                if let Some(seen) = tables
                    .tx_ids
                    .get(packed_tx_id)
                    .map_err(|e| store_error("tx_ids", e))?
                {
                    let (block, index, _) = seen.value();
                    outcomes.push(Outcome::Duplicate(format!("duplicate transaction id: already committed in block {block} at index {index}")));
                    continue;
                }
                let index = u32::try_from(transactions.len())
                    .map_err(|e| LedgerError::Internal(format!("block size: {e}")))?;
                let version = Version {
                    block: number,
                    tx: index,
                };
                let verdict = validate(
                    &e.rwset,
                    &BlockInProgress {
                        state: &tables.state,
                    },
                )
                .map_err(|e| LedgerError::Internal(e.0))?;
                let code = match &verdict {
                    Ok(()) => ValidationCode::Valid,
                    Err(MvccConflict::ReadConflict { .. }) => ValidationCode::MvccReadConflict,
                    Err(MvccConflict::PhantomRead { .. }) => ValidationCode::PhantomReadConflict,
                };
                if code.is_valid() {
                    if self.trainer.sampling() {
                        for value in e.rwset.writes.values().flatten() {
                            self.trainer.offer(value);
                        }
                    }
                    let keys = e.rwset.writes.keys().map(String::as_str);
                    tables.apply_writes(version, keys.zip(&e.prepared))?;
                }
                tables.index_tx(packed_tx_id, version, code)?;
                // Encoded and hashed at endorsement as valid; the last byte is the code.
                let mut bytes = e.tx_bytes.clone();
                if code.is_valid() {
                    tx_hashes.push(e.tx_hash);
                } else {
                    *bytes.last_mut().expect("a transaction is never empty") = code as u8;
                    tx_hashes.push(sha256(&bytes));
                }
                transactions.push(bytes);
                outcomes.push(match verdict {
                    Ok(()) => Outcome::Valid,
                    Err(conflict) => Outcome::Invalid(conflict.to_string()),
                });
            }
            if transactions.is_empty() {
                // Only duplicates: no block. Dropping the write transaction aborts it.
                return Ok(outcomes);
            }
            let header = BlockHeader {
                number,
                previous_hash: self.tip_hash,
                data_hash: BlockHeader::data_hash_of(&tx_hashes),
                timestamp: self.clock.now(),
                tx_hashes,
            };
            header_bytes = header.encode();
            block = RawBlock::encode(&header_bytes, &transactions, &self.key.sign(&header_bytes)?);
            tables.put_block(number, &block)?;
        }
        // A dictionary trained meanwhile is stored with this block and used only once it is
        // durable, so no value ever names a dictionary the store lacks: that block is always a
        // store sync.
        let new_dictionary = self.trainer.ready();
        if let Some(d) = &new_dictionary {
            dictionary::store(&wtx, d).map_err(|e| store_error("write value dictionary", e))?;
        }
        let journalled = match &mut self.journal {
            None => {
                wtx.set_durability(durability(self.durable))
                    .map_err(|e| store_error("durability", e))?;
                false
            }
            Some(journal) => {
                let sync_store = new_dictionary.is_some()
                    || self.last_store_sync.elapsed() >= self.store_sync_interval
                    || journal.bytes() >= JOURNAL_SYNC_BYTES;
                if sync_store {
                    wtx.set_durability(redb::Durability::Immediate)
                        .map_err(|e| store_error("durability", e))?;
                } else {
                    wtx.set_durability(redb::Durability::None)
                        .map_err(|e| store_error("durability", e))?;
                    // Durable here first: the store commit below is not. On failure the
                    // write transaction is dropped, so nothing of the block is anywhere.
                    journal
                        .append(&block)
                        .map_err(|e| LedgerError::Unavailable(io_fault(&e)))?;
                }
                !sync_store
            }
        };
        wtx.commit().map_err(|e| {
            let error = store_error("commit block", e);
            match error {
                // The block is durable in the journal: reopening the store replays it.
                LedgerError::Unavailable(message) if journalled => LedgerError::Unavailable(format!(
                    "{}; block {number} had reached the block journal and is recorded when the store reopens: look its transactions up before resubmitting",
                    message.replace("; nothing was recorded", "")
                )),
                error => error,
            }
        })?;
        if !journalled {
            self.store_synced();
        }
        if new_dictionary.is_some() {
            let stored = self.trainer.stored();
            if let Some(d) = &stored {
                tracing::info!(
                    dictionary = format!("{:016x}", d.id),
                    block = number,
                    "embedded ledger: values are compressed with the new dictionary from now on"
                );
            }
            self.shared.dictionary.set(stored);
        }
        self.next_number = number + 1;
        self.tip_hash = sha256(&header_bytes);
        self.height.store(self.next_number, Ordering::Release);
        Ok(outcomes)
    }
}

/// Find the tip of the log (`(next block number, hash of the last header)`), writing the
/// genesis block first if the store is new, and check that `key` signed the last block.
fn open_tip(
    db: &redb::Database,
    key: &NodeKey,
    clock: &dyn Clock,
) -> Result<(u64, Hash), LedgerError> {
    let mut wtx = db
        .begin_write()
        .map_err(|e| store_error("begin write", e))?;
    wtx.set_durability(redb::Durability::Immediate)
        .map_err(|e| store_error("durability", e))?;
    let (next_number, tip_hash) = {
        // Opening a table in a write transaction creates it: every table exists from here on,
        // so readers never meet a missing one.
        let mut blocks = wtx
            .open_table(store::BLOCKS)
            .map_err(|e| store_error("open blocks", e))?;
        wtx.open_table(store::STATE)
            .map_err(|e| store_error("open state", e))?;
        wtx.open_table(store::HISTORY)
            .map_err(|e| store_error("open history", e))?;
        wtx.open_table(store::TX_IDS)
            .map_err(|e| store_error("open tx_ids", e))?;
        let mut certs = wtx
            .open_table(store::CERTS)
            .map_err(|e| store_error("open certs", e))?;
        let last = store::last_stored_block(&blocks)
            .map_err(|e| LedgerError::Internal(format!("the last block is unreadable: {e}")))?;
        match last {
            Some((number, bytes)) => {
                let bytes = store::expand_block(&certs, &bytes).map_err(|e| {
                    LedgerError::Internal(format!(
                        "last block {number} is unreadable (run tom verify): {e}"
                    ))
                })?;
                let raw = RawBlock::decode(&bytes).map_err(|e| {
                    LedgerError::Internal(format!(
                        "last block {number} is undecodable (run tom verify): {e}"
                    ))
                })?;
                // Blocks signed by one key and then another would fail verification; refuse
                // to extend the log if the key in the data directory is not the one that
                // signed it (a lost or swapped node.key.pem).
                if !key.signed(raw.header_bytes, raw.signature) {
                    return Err(LedgerError::Internal(format!(
                        "the node key in the data directory did not sign the last block \
                         ({number}); restore the original node.key.pem or run tom verify"
                    )));
                }
                (number + 1, sha256(raw.header_bytes))
            }
            None => {
                drop(last);
                let header = BlockHeader {
                    number: 0,
                    previous_hash: [0; 32],
                    data_hash: BlockHeader::data_hash_of(&[]),
                    timestamp: clock.now(),
                    tx_hashes: vec![],
                };
                let header_bytes = header.encode();
                let block = RawBlock::encode(&header_bytes, &[], &key.sign(&header_bytes)?);
                store::put_block(&mut blocks, &mut certs, 0, &block)
                    .map_err(|e| store_error("write genesis block", e))?;
                (1, sha256(&header_bytes))
            }
        }
    };
    wtx.commit().map_err(|e| store_error("commit", e))?;
    Ok((next_number, tip_hash))
}

/// Apply the journal's blocks that the store lacks ([`super::block_journal`]) in one durable
/// commit, as the committer applied them: each must be the store's next block, continue the
/// hash chain, carry `key`'s signature and hash to its transactions; the writes of its valid
/// transactions and every transaction's index entry go in as they did. Blocks the store has
/// already are skipped. Returns how many blocks were applied.
pub(super) fn replay_journal(
    db: &redb::Database,
    journal: &[Vec<u8>],
    key: &NodeKey,
    dictionary: Option<&ValueDictionary>,
) -> Result<u64, LedgerError> {
    if journal.is_empty() {
        return Ok(0);
    }
    let refuse = |number: u64, why: String| {
        LedgerError::Internal(format!(
            "the block journal's block {number} cannot be replayed: {why}. The journal or the \
             store was changed behind the node's back (or they come from different copies): \
             keep both as they are for investigation; nothing was applied"
        ))
    };
    let mut wtx = db
        .begin_write()
        .map_err(|e| store_error("begin write", e))?;
    wtx.set_durability(redb::Durability::Immediate)
        .map_err(|e| store_error("durability", e))?;
    let mut applied = 0;
    {
        let mut tables = BlockTables::open(&wtx)?;
        let last = store::last_stored_block(&tables.blocks)
            .map_err(|e| LedgerError::Internal(format!("the last block is unreadable: {e}")))?;
        let Some((last_number, last_bytes)) = last else {
            return Err(refuse(0, "the store has no genesis block".into()));
        };
        let last_bytes = store::expand_block(&tables.certs, &last_bytes)
            .map_err(|e| LedgerError::Internal(format!("last block {last_number}: {e}")))?;
        let last_raw = RawBlock::decode(&last_bytes)
            .map_err(|e| LedgerError::Internal(format!("last block {last_number}: {e}")))?;
        let mut tip_hash = sha256(last_raw.header_bytes);
        let mut next = last_number + 1;
        for bytes in journal {
            let raw = RawBlock::decode(bytes).map_err(|e| refuse(next, e.to_string()))?;
            let header =
                BlockHeader::decode(raw.header_bytes).map_err(|e| refuse(next, e.to_string()))?;
            if header.number < next {
                continue;
            }
            if header.number > next {
                return Err(refuse(
                    header.number,
                    format!("the store's next block is {next}"),
                ));
            }
            if header.previous_hash != tip_hash {
                return Err(refuse(
                    next,
                    "it does not continue the store's hash chain".into(),
                ));
            }
            if !key.signed(raw.header_bytes, raw.signature) {
                return Err(refuse(next, "the node key did not sign it".into()));
            }
            let hashes: Vec<Hash> = raw.transactions.iter().map(|t| sha256(t)).collect();
            if header.tx_hashes != hashes || header.data_hash != BlockHeader::data_hash_of(&hashes)
            {
                return Err(refuse(
                    next,
                    "its transactions do not hash to its header".into(),
                ));
            }
            for (index, tx_bytes) in raw.transactions.iter().enumerate() {
                let tx = Transaction::decode(tx_bytes).map_err(|e| refuse(next, e.to_string()))?;
                let index = u32::try_from(index)
                    .map_err(|e| LedgerError::Internal(format!("block size: {e}")))?;
                let packed = store::packed_tx_id(&tx.proposal.tx_id).ok_or_else(|| {
                    refuse(next, format!("transaction id {:?}", tx.proposal.tx_id))
                })?;
                let version = Version {
                    block: next,
                    tx: index,
                };
                if tx.code.is_valid() {
                    let prepared: Vec<_> = tx
                        .rwset
                        .writes
                        .iter()
                        .map(|(key, value)| {
                            store::PreparedWrite::of(key, value.as_deref(), dictionary)
                        })
                        .collect();
                    let keys = tx.rwset.writes.keys().map(String::as_str);
                    tables.apply_writes(version, keys.zip(&prepared))?;
                }
                tables.index_tx(packed, version, tx.code)?;
            }
            tables.put_block(next, bytes)?;
            tip_hash = sha256(raw.header_bytes);
            next += 1;
            applied += 1;
        }
    }
    wtx.commit()
        .map_err(|e| store_error("commit replayed blocks", e))?;
    Ok(applied)
}

/// The tables a block writes, opened in one write transaction: the live commit and the
/// journal's replay write a block the same way through these.
struct BlockTables<'t> {
    state: redb::Table<'t, &'static [u8], &'static [u8]>,
    history: redb::Table<'t, (store::KeyHash, u64, u32), &'static [u8]>,
    tx_ids: redb::Table<'t, [u8; 32], (u64, u32, u8)>,
    blocks: redb::Table<'t, (u64, u32), &'static [u8]>,
    certs: redb::Table<'t, &'static [u8], &'static [u8]>,
}

impl<'t> BlockTables<'t> {
    fn open(wtx: &'t redb::WriteTransaction) -> Result<BlockTables<'t>, LedgerError> {
        Ok(BlockTables {
            state: wtx
                .open_table(store::STATE)
                .map_err(|e| store_error("open state", e))?,
            history: wtx
                .open_table(store::HISTORY)
                .map_err(|e| store_error("open history", e))?,
            tx_ids: wtx
                .open_table(store::TX_IDS)
                .map_err(|e| store_error("open tx_ids", e))?,
            blocks: wtx
                .open_table(store::BLOCKS)
                .map_err(|e| store_error("open blocks", e))?,
            certs: wtx
                .open_table(store::CERTS)
                .map_err(|e| store_error("open certs", e))?,
        })
    }

    /// A valid transaction's writes, at `version` (the value, tx id and timestamp are in the
    /// block's transaction).
    fn apply_writes<'w>(
        &mut self,
        version: Version,
        writes: impl Iterator<Item = (&'w str, &'w store::PreparedWrite)>,
    ) -> Result<(), LedgerError> {
        for (key, prepared) in writes {
            store::record_write(&mut self.state, &mut self.history, key, version, prepared)
                .map_err(|e| match e {
                    store::WriteError::Store(context, e) => store_error(context, e),
                    store::WriteError::Corrupt(e) => LedgerError::Internal(e.0),
                })?;
        }
        Ok(())
    }

    /// Where a transaction is in the log, valid or not.
    fn index_tx(
        &mut self,
        packed_tx_id: [u8; 32],
        at: Version,
        code: ValidationCode,
    ) -> Result<(), LedgerError> {
        self.tx_ids
            .insert(packed_tx_id, (at.block, at.tx, code as u8))
            .map_err(|e| store_error("write tx_ids", e))?;
        Ok(())
    }

    fn put_block(&mut self, number: u64, canonical: &[u8]) -> Result<(), LedgerError> {
        store::put_block(&mut self.blocks, &mut self.certs, number, canonical)
            .map_err(|e| store_error("write block", e))
    }
}
