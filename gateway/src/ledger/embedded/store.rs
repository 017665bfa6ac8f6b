//! The redb tables of the embedded ledger and the contract's view of them.
//!
//! One redb file (`ledger.redb` in the data directory) holds everything, so one write transaction
//! commits a block atomically with the world state, key history and transaction index it
//! produces: after a crash either all of a block is there or none of it.
//!
//! | table     | key                       | value                                                   |
//! |-----------|---------------------------|---------------------------------------------------------|
//! | `blocks`  | block number (`u64`)      | the block's bytes exactly as hashed and signed (see [`super::codec`]) |
//! | `state`   | key (`&str`)              | `u64 block ‖ u32 tx ‖ value`: the version that wrote it, then the value |
//! | `history` | `(key, block, tx)`        | `text tx_id ‖ i64 seconds ‖ i32 nanos ‖ u8 is_delete ‖ value` |
//! | `tx_ids`  | transaction id (`&str`)   | `(block, tx index, validation code)`                    |
//!
//! The block log is the record; `state`, `history` and `tx_ids` are indexes derived from it (a
//! Fabric peer's state and history databases), kept in the same file so they never disagree.

use redb::{ReadableTable, TableDefinition};
use tom_contract::ledger::{KeyModification, LedgerError as StubError};
use tom_contract::simulation::{CommittedState, Version, VersionedValue};
use tom_contract::Timestamp;

use super::codec::{Reader, Writer};

pub const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
pub const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
pub const HISTORY: TableDefinition<(&str, u64, u32), &[u8]> = TableDefinition::new("history");
pub const TX_IDS: TableDefinition<&str, (u64, u32, u8)> = TableDefinition::new("tx_ids");

/// The name of the store file inside the data directory.
pub const STORE_FILE: &str = "ledger.redb";

pub fn stub_error(context: &str, e: impl std::fmt::Display) -> StubError {
    StubError(format!("embedded ledger store: {context}: {e}"))
}

pub fn encode_versioned(version: Version, value: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(12 + value.len());
    w.version(version);
    w.buf.extend_from_slice(value);
    w.buf
}

pub fn decode_versioned(key: &str, bytes: &[u8]) -> Result<VersionedValue, StubError> {
    if bytes.len() < 12 {
        return Err(StubError(format!(
            "embedded ledger store: value of key {key:?} is {} bytes, shorter than its version",
            bytes.len()
        )));
    }
    let mut r = Reader::new("state value", &bytes[..12]);
    let version = r.version().map_err(|e| stub_error(key, e))?;
    Ok(VersionedValue {
        value: bytes[12..].to_vec(),
        version,
    })
}

pub fn encode_modification(tx_id: &str, timestamp: Timestamp, value: Option<&[u8]>) -> Vec<u8> {
    let is_delete = value.is_none();
    let value = value.unwrap_or_default();
    let mut w = Writer::with_capacity(20 + tx_id.len() + value.len());
    w.text(tx_id);
    w.i64(timestamp.seconds);
    w.i32(timestamp.nanos);
    w.u8(u8::from(is_delete));
    w.buf.extend_from_slice(value);
    w.buf
}

fn decode_modification(key: &str, bytes: &[u8]) -> Result<KeyModification, StubError> {
    let mut r = Reader::new("history entry", bytes);
    let parse =
        |r: &mut Reader<'_>| -> Result<(String, Timestamp, bool), super::codec::DecodeError> {
            let tx_id = r.text()?.to_owned();
            let timestamp = Timestamp {
                seconds: r.i64()?,
                nanos: r.i32()?,
            };
            Ok((tx_id, timestamp, r.flag()?))
        };
    let (tx_id, timestamp, is_delete) = parse(&mut r).map_err(|e| stub_error(key, e))?;
    // The value is whatever follows the fixed part.
    let fixed = 4 + tx_id.len() + 8 + 4 + 1;
    let value = bytes.get(fixed..).unwrap_or_default().to_vec();
    Ok(KeyModification {
        tx_id,
        timestamp,
        value,
        is_delete,
    })
}

/// A versioned `get` on any state table (snapshot or the block being written).
pub fn get_versioned<T: ReadableTable<&'static str, &'static [u8]>>(
    table: &T,
    key: &str,
) -> Result<Option<VersionedValue>, StubError> {
    match table.get(key).map_err(|e| stub_error("get", e))? {
        None => Ok(None),
        Some(guard) => decode_versioned(key, guard.value()).map(Some),
    }
}

/// Keys in `[start, end)` ascending (`end` empty = unbounded), on any state table.
pub fn range_versioned<T: ReadableTable<&'static str, &'static [u8]>>(
    table: &T,
    start: &str,
    end: &str,
) -> Result<Vec<(String, VersionedValue)>, StubError> {
    let rows = if end.is_empty() {
        table.range(start..)
    } else if end <= start {
        return Ok(Vec::new());
    } else {
        table.range(start..end)
    }
    .map_err(|e| stub_error("range", e))?;
    let mut out = Vec::new();
    for row in rows {
        let (key, value) = row.map_err(|e| stub_error("range", e))?;
        let key = key.value();
        out.push((key.to_owned(), decode_versioned(key, value.value())?));
    }
    Ok(out)
}

/// Every committed change of `key`, oldest first.
pub fn history_of<T: ReadableTable<(&'static str, u64, u32), &'static [u8]>>(
    table: &T,
    key: &str,
) -> Result<Vec<KeyModification>, StubError> {
    let rows = table
        .range((key, 0u64, 0u32)..=(key, u64::MAX, u32::MAX))
        .map_err(|e| stub_error("history", e))?;
    let mut out = Vec::new();
    for row in rows {
        let (_, value) = row.map_err(|e| stub_error("history", e))?;
        out.push(decode_modification(key, value.value())?);
    }
    Ok(out)
}

/// Where the bytes of one redb table go (see [`space_report`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpace {
    pub name: String,
    pub entries: u64,
    /// Keys and values as inserted.
    pub stored_bytes: u64,
    /// Branch-page keys and other B-tree metadata.
    pub metadata_bytes: u64,
    /// Unused space inside the table's pages.
    pub fragmented_bytes: u64,
}

impl TableSpace {
    /// The bytes the table occupies in the file.
    pub fn total(&self) -> u64 {
        self.stored_bytes + self.metadata_bytes + self.fragmented_bytes
    }
}

/// Where the store file's bytes go, table by table, for benchmarks and capacity planning.
/// Opens the store read-only, so the ledger must not be open.
pub fn space_report(path: &std::path::Path) -> Result<Vec<TableSpace>, String> {
    use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle};
    let db = redb::ReadOnlyDatabase::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for handle in txn.list_tables().map_err(|e| e.to_string())? {
        let name = handle.name().to_owned();
        let table = txn.open_untyped_table(handle).map_err(|e| e.to_string())?;
        let stats = table.stats().map_err(|e| e.to_string())?;
        out.push(TableSpace {
            name,
            entries: table.len().map_err(|e| e.to_string())?,
            stored_bytes: stats.stored_bytes(),
            metadata_bytes: stats.metadata_bytes(),
            fragmented_bytes: stats.fragmented_bytes(),
        });
    }
    Ok(out)
}

/// Committed state as of one read transaction: what simulations run against. Many may exist
/// at once, on any threads; each sees the ledger as of the last block committed before it began.
pub struct Snapshot {
    state: redb::ReadOnlyTable<&'static str, &'static [u8]>,
    history: redb::ReadOnlyTable<(&'static str, u64, u32), &'static [u8]>,
    tx_ids: redb::ReadOnlyTable<&'static str, (u64, u32, u8)>,
}

impl Snapshot {
    pub fn begin(db: &redb::Database) -> Result<Snapshot, StubError> {
        use redb::ReadableDatabase;
        let txn = db.begin_read().map_err(|e| stub_error("begin read", e))?;
        Snapshot::of(&txn)
    }

    /// The state as of `txn` (to read blocks consistently with it in the same transaction).
    pub fn of(txn: &redb::ReadTransaction) -> Result<Snapshot, StubError> {
        Ok(Snapshot {
            state: txn
                .open_table(STATE)
                .map_err(|e| stub_error("open state", e))?,
            history: txn
                .open_table(HISTORY)
                .map_err(|e| stub_error("open history", e))?,
            tx_ids: txn
                .open_table(TX_IDS)
                .map_err(|e| stub_error("open tx_ids", e))?,
        })
    }

    /// Where a transaction id was committed, if it was.
    pub fn tx_status(&self, tx_id: &str) -> Result<Option<(u64, u32, u8)>, StubError> {
        Ok(self
            .tx_ids
            .get(tx_id)
            .map_err(|e| stub_error("tx_ids", e))?
            .map(|g| g.value()))
    }
}

impl CommittedState for Snapshot {
    fn get(&self, key: &str) -> Result<Option<VersionedValue>, StubError> {
        get_versioned(&self.state, key)
    }

    fn range(&self, start: &str, end: &str) -> Result<Vec<(String, VersionedValue)>, StubError> {
        range_versioned(&self.state, start, end)
    }

    fn history(&self, key: &str) -> Result<Vec<KeyModification>, StubError> {
        history_of(&self.history, key)
    }
}

/// The state as the committer validates against it: committed blocks plus the valid
/// transactions already applied in the block being cut, so a later transaction in the same
/// block that read what an earlier one wrote is invalidated, as on a Fabric peer.
pub struct BlockInProgress<'a, 't> {
    pub state: &'a redb::Table<'t, &'static str, &'static [u8]>,
}

impl CommittedState for BlockInProgress<'_, '_> {
    fn get(&self, key: &str) -> Result<Option<VersionedValue>, StubError> {
        get_versioned(self.state, key)
    }

    fn range(&self, start: &str, end: &str) -> Result<Vec<(String, VersionedValue)>, StubError> {
        range_versioned(self.state, start, end)
    }

    fn history(&self, _key: &str) -> Result<Vec<KeyModification>, StubError> {
        // Validation never reads history (Fabric does not version history reads).
        Err(StubError("history is not part of MVCC validation".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_modifications_round_trip() {
        let v = Version { block: 7, tx: 3 };
        let bytes = encode_versioned(v, b"hello");
        assert_eq!(
            decode_versioned("k", &bytes).unwrap(),
            VersionedValue {
                value: b"hello".to_vec(),
                version: v
            }
        );
        assert!(decode_versioned("k", &bytes[..5]).is_err());

        let ts = Timestamp {
            seconds: 12,
            nanos: 34,
        };
        let m = decode_modification("k", &encode_modification("tx1", ts, Some(b"v"))).unwrap();
        assert_eq!(
            m,
            KeyModification {
                tx_id: "tx1".into(),
                timestamp: ts,
                value: b"v".to_vec(),
                is_delete: false
            }
        );
        let d = decode_modification("k", &encode_modification("tx2", ts, None)).unwrap();
        assert!(d.is_delete && d.value.is_empty());
    }
}
