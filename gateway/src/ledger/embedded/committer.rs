//! The single writer of the embedded ledger: orders endorsed transactions into blocks,
//! validates them, and commits each block durably before anyone hears about it.
//!
//! It runs on a dedicated OS thread rather than a tokio task because all of its work is
//! blocking (redb writes and the fsync) and because it must keep draining even while an async
//! runtime is blocked in [`super::EmbeddedLedger::shutdown`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redb::ReadableTable;
use tokio::sync::{broadcast, mpsc, oneshot};
use tom_contract::simulation::{validate, MvccConflict, Version};

use super::codec::{self, sha256, BlockHeader, Hash, RawBlock, ValidationCode};
use super::node_key::NodeKey;
use super::store::{self, BlockInProgress};
use super::{store_error, Endorsement};
use crate::ledger::memory::now;
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

pub(super) struct Committer {
    db: Arc<redb::Database>,
    key: NodeKey,
    durable: bool,
    max_block_transactions: usize,
    batch_wait: std::time::Duration,
    events: broadcast::Sender<CommittedEvent>,
    height: Arc<AtomicU64>,
    /// The number the next block gets.
    next_number: u64,
    /// SHA-256 of the last block's header bytes.
    tip_hash: Hash,
}

fn durability(durable: bool) -> redb::Durability {
    if durable {
        redb::Durability::Immediate
    } else {
        redb::Durability::None
    }
}

impl Committer {
    /// Find the tip of the log, writing the genesis block first if the store is new.
    pub fn start(
        db: Arc<redb::Database>,
        key: NodeKey,
        options: &super::EmbeddedOptions,
        events: broadcast::Sender<CommittedEvent>,
        height: Arc<AtomicU64>,
    ) -> Result<Committer, LedgerError> {
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
            let last = blocks
                .last()
                .map_err(|e| store_error("read last block", e))?;
            match last {
                Some((number, bytes)) => {
                    let number = number.value();
                    let raw = RawBlock::decode(bytes.value()).map_err(|e| {
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
                        timestamp: now(),
                        tx_hashes: vec![],
                    };
                    let header_bytes = header.encode();
                    let block = RawBlock::encode(&header_bytes, &[], &key.sign(&header_bytes)?);
                    blocks
                        .insert(0u64, block.as_slice())
                        .map_err(|e| store_error("write genesis block", e))?;
                    (1, sha256(&header_bytes))
                }
            }
        };
        wtx.commit().map_err(|e| store_error("commit", e))?;
        height.store(next_number, Ordering::Release);
        Ok(Committer {
            db,
            key,
            durable: options.durable,
            max_block_transactions: options.max_block_transactions,
            batch_wait: options.batch_wait,
            events,
            height,
            next_number,
            tip_hash,
        })
    }

    pub fn node_key(&self) -> &NodeKey {
        &self.key
    }

    pub fn run(mut self, mut queue: mpsc::Receiver<Message>) {
        let mut stopping = false;
        while !stopping {
            let Some(first) = queue.blocking_recv() else {
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
            self.commit(batch);
        }
        // Whatever is still queued was never ordered: dropping it answers its submitters with
        // "shut down" (their reply channels close), and closing refuses newcomers.
        queue.close();
        if !self.durable {
            // Non-durable commits live in memory until a durable one follows; make the last
            // ones durable so a clean shutdown loses nothing even in that mode.
            if let Err(e) = self.flush() {
                tracing::error!(error = %e, "embedded ledger: final flush failed");
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

    /// An empty durable commit: persists every earlier non-durable one.
    fn flush(&self) -> Result<(), LedgerError> {
        let mut wtx = self
            .db
            .begin_write()
            .map_err(|e| store_error("begin write", e))?;
        wtx.set_durability(redb::Durability::Immediate)
            .map_err(|e| store_error("durability", e))?;
        wtx.commit().map_err(|e| store_error("commit", e))
    }

    fn commit(&mut self, batch: Vec<Ordered>) {
        let outcomes = match self.write_block(&batch) {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::error!(error = %e, transactions = batch.len(), "embedded ledger: block commit failed");
                for ordered in batch {
                    let _ = ordered.reply.send(Err(e.clone()));
                }
                return;
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
    }

    /// Validate the batch, write it as one block and commit durably. On success the tip has
    /// moved (`next_number - 1` is the new block) unless no transaction entered a block.
    fn write_block(&mut self, batch: &[Ordered]) -> Result<Vec<Outcome>, LedgerError> {
        let number = self.next_number;
        let mut wtx = self
            .db
            .begin_write()
            .map_err(|e| store_error("begin write", e))?;
        wtx.set_durability(durability(self.durable))
            .map_err(|e| store_error("durability", e))?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut transactions = Vec::with_capacity(batch.len());
        let mut tx_hashes = Vec::with_capacity(batch.len());
        let header_bytes;
        {
            let mut state = wtx
                .open_table(store::STATE)
                .map_err(|e| store_error("open state", e))?;
            let mut history = wtx
                .open_table(store::HISTORY)
                .map_err(|e| store_error("open history", e))?;
            let mut tx_ids = wtx
                .open_table(store::TX_IDS)
                .map_err(|e| store_error("open tx_ids", e))?;
            let mut blocks = wtx
                .open_table(store::BLOCKS)
                .map_err(|e| store_error("open blocks", e))?;
            let mut in_block = HashSet::with_capacity(batch.len());
            for Ordered { endorsement: e, .. } in batch {
                let tx_id = e.tx_id.as_str();
                if !in_block.insert(tx_id) {
                    outcomes.push(Outcome::Duplicate(format!(
                        "duplicate transaction id: submitted twice to block {number}"
                    )));
                    continue;
                }
                if let Some(seen) = tx_ids.get(tx_id).map_err(|e| store_error("tx_ids", e))? {
                    let (block, index, _) = seen.value();
                    outcomes.push(Outcome::Duplicate(format!("duplicate transaction id: already committed in block {block} at index {index}")));
                    continue;
                }
                let index =
                    u32::try_from(transactions.len()).map_err(|e| store_error("block size", e))?;
                let verdict = validate(&e.rwset, &BlockInProgress { state: &state })
                    .map_err(|e| LedgerError::Internal(e.0))?;
                let code = match &verdict {
                    Ok(()) => ValidationCode::Valid,
                    Err(MvccConflict::ReadConflict { .. }) => ValidationCode::MvccReadConflict,
                    Err(MvccConflict::PhantomRead { .. }) => ValidationCode::PhantomReadConflict,
                };
                if code.is_valid() {
                    let version = Version {
                        block: number,
                        tx: index,
                    };
                    for (key, value) in &e.rwset.writes {
                        match value {
                            Some(value) => {
                                state
                                    .insert(
                                        key.as_str(),
                                        store::encode_versioned(version, value).as_slice(),
                                    )
                                    .map_err(|e| store_error("write state", e))?;
                            }
                            None => {
                                state
                                    .remove(key.as_str())
                                    .map_err(|e| store_error("delete state", e))?;
                            }
                        }
                        let modification =
                            store::encode_modification(tx_id, e.timestamp, value.as_deref());
                        history
                            .insert((key.as_str(), number, index), modification.as_slice())
                            .map_err(|e| store_error("write history", e))?;
                    }
                }
                tx_ids
                    .insert(tx_id, (number, index, code as u8))
                    .map_err(|e| store_error("write tx_ids", e))?;
                let bytes =
                    codec::encode_tx(&e.proposal_bytes, &e.signature, &e.rwset, &e.response, code);
                tx_hashes.push(sha256(&bytes));
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
                timestamp: now(),
                tx_hashes,
            };
            header_bytes = header.encode();
            let block =
                RawBlock::encode(&header_bytes, &transactions, &self.key.sign(&header_bytes)?);
            blocks
                .insert(number, block.as_slice())
                .map_err(|e| store_error("write block", e))?;
        }
        wtx.commit().map_err(|e| store_error("commit block", e))?;
        self.next_number = number + 1;
        self.tip_hash = sha256(&header_bytes);
        self.height.store(self.next_number, Ordering::Release);
        Ok(outcomes)
    }
}
