//! An in-memory ledger with Fabric's semantics, for tests, benchmarks and property checks.
//!
//! Every transaction is simulated against committed state ([`TxSimulator`]), validated with
//! MVCC at commit ([`validate`]) and only then applied; a block may carry several transactions,
//! validated in order, so a later transaction that read what an earlier one in the same block
//! wrote is invalidated, as on a Fabric peer. History is kept per committed transaction.

use std::collections::{BTreeMap, BTreeSet};

use crate::ledger::{Creator, KeyModification, LedgerError, Timestamp};
use crate::simulation::{
    validate, ChaincodeEvent, CommittedState, MvccConflict, ReadWriteSet, TxSimulator, Version,
    VersionedValue,
};
use crate::ContractError;

/// Committed state, key history and the events of committed transactions, all in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryLedger {
    state: BTreeMap<String, VersionedValue>,
    history: BTreeMap<String, Vec<KeyModification>>,
    committed_tx_ids: BTreeSet<String>,
    events: Vec<CommittedEvent>,
    height: u64,
}

/// An event of a committed transaction, in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedEvent {
    pub tx_id: String,
    pub event: ChaincodeEvent,
}

/// A simulated transaction waiting to be committed.
#[derive(Debug, Clone)]
pub struct Endorsed {
    pub tx_id: String,
    pub timestamp: Timestamp,
    pub rwset: ReadWriteSet,
    pub response: Vec<u8>,
}

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("transaction rejected by the contract: {0}")]
    Rejected(#[from] ContractError),
    #[error("transaction {tx_id} invalidated at commit: {conflict}")]
    Mvcc {
        tx_id: String,
        conflict: MvccConflict,
    },
    #[error("duplicate transaction id {0}")]
    DuplicateTxId(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of committed blocks.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Events of committed transactions, oldest first.
    pub fn events(&self) -> &[CommittedEvent] {
        &self.events
    }

    /// All committed keys and values, ascending (for invariant checks in tests).
    pub fn dump(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.state
            .iter()
            .map(|(k, v)| (k.as_str(), v.value.as_slice()))
    }

    /// Simulate `function(args)` as `creator` without committing (Fabric's endorsement).
    pub fn endorse(
        &self,
        creator: &Creator,
        tx_id: &str,
        timestamp: Timestamp,
        function: &str,
        args: &[&[u8]],
    ) -> Result<Endorsed, ContractError> {
        let mut sim = TxSimulator::new(self, tx_id, timestamp, creator.clone());
        let response = crate::invoke(&mut sim, function, args)?;
        Ok(Endorsed {
            tx_id: tx_id.to_owned(),
            timestamp,
            rwset: sim.into_rwset(),
            response,
        })
    }

    /// Validate and apply a block of endorsed transactions in order; returns each one's outcome.
    pub fn commit_block(&mut self, block: Vec<Endorsed>) -> Vec<Result<Vec<u8>, SubmitError>> {
        self.height += 1;
        let block_number = self.height;
        let mut outcomes = Vec::with_capacity(block.len());
        for (index, tx) in block.into_iter().enumerate() {
            outcomes.push(self.apply(block_number, index as u32, tx));
        }
        outcomes
    }

    fn apply(&mut self, block: u64, index: u32, tx: Endorsed) -> Result<Vec<u8>, SubmitError> {
        if self.committed_tx_ids.contains(&tx.tx_id) {
            return Err(SubmitError::DuplicateTxId(tx.tx_id));
        }
        if let Err(conflict) = validate(&tx.rwset, self)? {
            return Err(SubmitError::Mvcc {
                tx_id: tx.tx_id,
                conflict,
            });
        }
        let version = Version { block, tx: index };
        for (key, write) in tx.rwset.writes {
            let modification = KeyModification {
                tx_id: tx.tx_id.clone(),
                timestamp: tx.timestamp,
                value: write.clone().unwrap_or_default(),
                is_delete: write.is_none(),
            };
            self.history
                .entry(key.clone())
                .or_default()
                .push(modification);
            match write {
                Some(value) => {
                    self.state.insert(key, VersionedValue { value, version });
                }
                None => {
                    self.state.remove(&key);
                }
            }
        }
        if let Some(event) = tx.rwset.event {
            self.events.push(CommittedEvent {
                tx_id: tx.tx_id.clone(),
                event,
            });
        }
        self.committed_tx_ids.insert(tx.tx_id);
        Ok(tx.response)
    }

    /// Endorse and commit one transaction in a block of its own.
    pub fn submit(
        &mut self,
        creator: &Creator,
        tx_id: &str,
        timestamp: Timestamp,
        function: &str,
        args: &[&[u8]],
    ) -> Result<Vec<u8>, SubmitError> {
        if self.committed_tx_ids.contains(tx_id) {
            return Err(SubmitError::DuplicateTxId(tx_id.to_owned()));
        }
        let endorsed = self.endorse(creator, tx_id, timestamp, function, args)?;
        self.commit_block(vec![endorsed])
            .pop()
            .unwrap_or_else(|| Err(LedgerError("empty block".into()).into()))
    }

    /// Run a read-only query (simulated, never committed).
    pub fn evaluate(
        &self,
        creator: &Creator,
        tx_id: &str,
        timestamp: Timestamp,
        function: &str,
        args: &[&[u8]],
    ) -> Result<Vec<u8>, ContractError> {
        Ok(self
            .endorse(creator, tx_id, timestamp, function, args)?
            .response)
    }
}

impl CommittedState for MemoryLedger {
    fn get(&self, key: &str) -> Result<Option<VersionedValue>, LedgerError> {
        Ok(self.state.get(key).cloned())
    }

    fn range(&self, start: &str, end: &str) -> Result<Vec<(String, VersionedValue)>, LedgerError> {
        self.range_limited(start, end, usize::MAX)
    }

    /// Stops after `limit` keys: a paged read (a lineage step, a page of records) costs what it
    /// returns, however many keys follow in the range.
    fn range_limited(
        &self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, VersionedValue)>, LedgerError> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let upper = if end.is_empty() {
            Unbounded
        } else {
            Excluded(end)
        };
        if !end.is_empty() && end <= start {
            return Ok(Vec::new());
        }
        Ok(self
            .state
            .range::<str, _>((Included(start), upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn history(&self, key: &str) -> Result<Vec<KeyModification>, LedgerError> {
        Ok(self.history.get(key).cloned().unwrap_or_default())
    }
}
