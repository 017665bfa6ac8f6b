//! Transaction simulation and MVCC validation with Fabric's semantics, shared by every ledger
//! that executes the contract itself (the in-memory ledger here and the gateway's embedded one).
//!
//! A [`TxSimulator`] runs one transaction against a snapshot of committed state and records what
//! it read (key → version, and every range query with the versions it saw) and what it wrote.
//! Reads never see the transaction's own writes. [`validate`] re-checks the read set against the
//! state as it is at commit time; any difference is an MVCC conflict or a phantom read, and the
//! transaction is invalid, exactly as a Fabric peer's validator decides.
//!
//! Nothing here does I/O: the committed state is behind [`CommittedState`].

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::ledger::{Creator, KeyModification, KeyValue, LedgerError, LedgerStub, Timestamp};

/// The position of the transaction that last wrote a key: Fabric's `(blockNum, txNum)` height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub block: u64,
    pub tx: u32,
}

/// A committed value with the version that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedValue {
    pub value: Vec<u8>,
    pub version: Version,
}

/// Read access to committed state, as of the last committed block.
pub trait CommittedState {
    fn get(&self, key: &str) -> Result<Option<VersionedValue>, LedgerError>;
    /// Keys in `[start, end)` ascending; an empty `end` means unbounded.
    fn range(&self, start: &str, end: &str) -> Result<Vec<(String, VersionedValue)>, LedgerError>;
    /// The first `limit` keys of [`CommittedState::range`]. Paged queries read through this, so
    /// a page costs what it returns, not what follows it in the range; a store that can stop a
    /// scan early should override the default, which reads the whole range.
    fn range_limited(
        &self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, VersionedValue)>, LedgerError> {
        let mut rows = self.range(start, end)?;
        rows.truncate(limit);
        Ok(rows)
    }
    fn history(&self, key: &str) -> Result<Vec<KeyModification>, LedgerError>;
    /// The version of `key` alone: what MVCC validation compares. A store that keeps values
    /// compressed should override the default, which reads (and decodes) the value too.
    fn version(&self, key: &str) -> Result<Option<Version>, LedgerError> {
        Ok(self.get(key)?.map(|v| v.version))
    }
    /// The keys in `[start, end)` with their versions alone: what phantom detection compares.
    /// As [`CommittedState::version`], the default reads the values too.
    fn range_versions(
        &self,
        start: &str,
        end: &str,
    ) -> Result<Vec<(String, Version)>, LedgerError> {
        Ok(self
            .range(start, end)?
            .into_iter()
            .map(|(k, v)| (k, v.version))
            .collect())
    }
}

/// A range query as the simulator saw it, kept so that validation can detect phantoms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeRead {
    pub start: String,
    pub end: String,
    /// The last key the query could have returned (pagination stops early); `None` = to `end`.
    pub last_key: Option<String>,
    pub seen: Vec<(String, Version)>,
}

/// A chaincode event set by the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaincodeEvent {
    pub name: String,
    pub payload: Vec<u8>,
}

/// What one simulated transaction read and wrote. Writes are ordered by key (deterministic).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadWriteSet {
    /// Key → the version read (`None`: read while absent).
    pub reads: BTreeMap<String, Option<Version>>,
    pub range_reads: Vec<RangeRead>,
    /// Key → new value (`None`: delete).
    pub writes: BTreeMap<String, Option<Vec<u8>>>,
    pub event: Option<ChaincodeEvent>,
}

/// Why a simulated transaction may not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MvccConflict {
    #[error(
        "mvcc read conflict on key {key:?}: read version {read:?}, committed version {committed:?}"
    )]
    ReadConflict {
        key: String,
        read: Option<Version>,
        committed: Option<Version>,
    },
    #[error("phantom read in range [{start:?}, {end:?}): the keys in that range changed")]
    PhantomRead { start: String, end: String },
}

/// The channel name a simulator reports unless told otherwise: the name TOM's Fabric network
/// and the embedded ledger use by default.
pub const DEFAULT_CHANNEL: &str = "tom";

/// One transaction's view of the ledger: committed state plus its own pending writes.
pub struct TxSimulator<'a, S: CommittedState + ?Sized> {
    state: &'a S,
    tx_id: String,
    timestamp: Timestamp,
    creator: Creator,
    channel_id: String,
    // RefCell: `LedgerStub` reads take `&self` (as Fabric's stub does), yet every read must be
    // recorded for validation. A simulator is used by one transaction on one thread.
    reads: RefCell<BTreeMap<String, Option<Version>>>,
    range_reads: RefCell<Vec<RangeRead>>,
    writes: BTreeMap<String, Option<Vec<u8>>>,
    event: Option<ChaincodeEvent>,
}

impl<'a, S: CommittedState + ?Sized> TxSimulator<'a, S> {
    pub fn new(
        state: &'a S,
        tx_id: impl Into<String>,
        timestamp: Timestamp,
        creator: Creator,
    ) -> Self {
        TxSimulator {
            state,
            tx_id: tx_id.into(),
            timestamp,
            creator,
            channel_id: DEFAULT_CHANNEL.to_owned(),
            reads: RefCell::new(BTreeMap::new()),
            range_reads: RefCell::new(Vec::new()),
            writes: BTreeMap::new(),
            event: None,
        }
    }

    /// Run on channel (or ledger name) `channel_id` instead of [`DEFAULT_CHANNEL`].
    pub fn on_channel(mut self, channel_id: impl Into<String>) -> Self {
        self.channel_id = channel_id.into();
        self
    }

    /// The read-write set, ending the simulation.
    pub fn into_rwset(self) -> ReadWriteSet {
        ReadWriteSet {
            reads: self.reads.into_inner(),
            range_reads: self.range_reads.into_inner(),
            writes: self.writes,
            event: self.event,
        }
    }

    fn record_range(
        &self,
        start: &str,
        end: &str,
        last_key: Option<String>,
        seen: &[(String, VersionedValue)],
    ) {
        self.range_reads.borrow_mut().push(RangeRead {
            start: start.to_owned(),
            end: end.to_owned(),
            last_key,
            seen: seen.iter().map(|(k, v)| (k.clone(), v.version)).collect(),
        });
    }
}

/// Fabric treats an empty range start as "from the first simple key" (keys below `\x01` are
/// composite keys, which plain range queries never return).
fn effective_start(start: &str) -> &str {
    if start.is_empty() {
        "\u{1}"
    } else {
        start
    }
}

impl<S: CommittedState + ?Sized> LedgerStub for TxSimulator<'_, S> {
    fn tx_id(&self) -> &str {
        &self.tx_id
    }

    fn tx_timestamp(&self) -> Timestamp {
        self.timestamp
    }

    fn creator(&self) -> &Creator {
        &self.creator
    }

    fn channel_id(&self) -> &str {
        &self.channel_id
    }

    fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        check_key(key)?;
        let committed = self.state.get(key)?;
        self.reads
            .borrow_mut()
            .entry(key.to_owned())
            .or_insert(committed.as_ref().map(|v| v.version));
        Ok(committed.map(|v| v.value))
    }

    fn put_state(&mut self, key: &str, value: Vec<u8>) -> Result<(), LedgerError> {
        check_key(key)?;
        if value.is_empty() {
            // Fabric rejects empty values on put; a delete is the way to remove a key.
            return Err(LedgerError(format!("empty value for key {key:?}")));
        }
        self.writes.insert(key.to_owned(), Some(value));
        Ok(())
    }

    fn delete_state(&mut self, key: &str) -> Result<(), LedgerError> {
        check_key(key)?;
        self.writes.insert(key.to_owned(), None);
        Ok(())
    }

    fn get_state_by_range(&self, start: &str, end: &str) -> Result<Vec<KeyValue>, LedgerError> {
        let start = effective_start(start);
        let rows = self.state.range(start, end)?;
        self.record_range(start, end, None, &rows);
        Ok(rows
            .into_iter()
            .map(|(key, v)| KeyValue {
                key,
                value: v.value,
            })
            .collect())
    }

    fn get_state_by_range_with_pagination(
        &self,
        start: &str,
        end: &str,
        page_size: u32,
        bookmark: &str,
    ) -> Result<(Vec<KeyValue>, String), LedgerError> {
        let from = if bookmark.is_empty() {
            effective_start(start)
        } else {
            bookmark
        };
        // One row past the page tells whether there is a next page and where it starts.
        let mut rows = if page_size > 0 {
            self.state
                .range_limited(from, end, page_size as usize + 1)?
        } else {
            self.state.range(from, end)?
        };
        let next = if page_size > 0 && rows.len() > page_size as usize {
            let next = rows[page_size as usize].0.clone();
            rows.truncate(page_size as usize);
            next
        } else {
            String::new()
        };
        let last_key = (!next.is_empty()).then(|| next.clone());
        self.record_range(from, end, last_key, &rows);
        Ok((
            rows.into_iter()
                .map(|(key, v)| KeyValue {
                    key,
                    value: v.value,
                })
                .collect(),
            next,
        ))
    }

    fn get_history_for_key(&self, key: &str) -> Result<Vec<KeyModification>, LedgerError> {
        check_key(key)?;
        self.state.history(key)
    }

    fn set_event(&mut self, name: &str, payload: Vec<u8>) -> Result<(), LedgerError> {
        if name.is_empty() {
            return Err(LedgerError("event name must not be empty".into()));
        }
        self.event = Some(ChaincodeEvent {
            name: name.to_owned(),
            payload,
        });
        Ok(())
    }
}

fn check_key(key: &str) -> Result<(), LedgerError> {
    if key.is_empty() {
        Err(LedgerError("key must not be empty".into()))
    } else {
        Ok(())
    }
}

/// Check a read-write set against committed state at commit time (Fabric's MVCC validation,
/// including phantom detection for range queries).
pub fn validate<S: CommittedState + ?Sized>(
    rwset: &ReadWriteSet,
    state: &S,
) -> Result<Result<(), MvccConflict>, LedgerError> {
    for (key, read) in &rwset.reads {
        let committed = state.version(key)?;
        if committed != *read {
            return Ok(Err(MvccConflict::ReadConflict {
                key: key.clone(),
                read: *read,
                committed,
            }));
        }
    }
    for range in &rwset.range_reads {
        // A paged read saw `[start, last_key)`; re-read only that, not the rest of the range.
        let now = match &range.last_key {
            Some(last) if last.as_str() <= range.end.as_str() || range.end.is_empty() => {
                state.range_versions(&range.start, last)?
            }
            _ => state.range_versions(&range.start, &range.end)?,
        };
        if now != range.seen {
            return Ok(Err(MvccConflict::PhantomRead {
                start: range.start.clone(),
                end: range.end.clone(),
            }));
        }
    }
    Ok(Ok(()))
}
