//! `tom compact`: the embedded ledger's indexes rewritten with full pages.
//!
//! redb splits a full leaf in half unless the new key sorts after every key of the table, and
//! the contract's indexes grow at the end of many key ranges at once (each agent's records, each
//! entity's), so their leaves settle about half full: at a million records a third of the store
//! was empty page. Copied in key order into a new table, every insert is past every key, so each
//! leaf is filled before the next is started. Compaction changes pages only, never a key, a value
//! or a block: what is hashed and signed, every answer and `tom verify` are the same after it.
//! It needs the store to itself (`tom serve` stopped), and an interrupted or failed run changes
//! nothing.

use std::path::Path;

use redb::{ReadableTable, TableDefinition};

use super::store::{self, HISTORY, STATE, TX_IDS};
use crate::ledger::LedgerError;

/// Rewrite the indexes of the ledger in `data_dir` with full pages and give the freed space back
/// to the disk ([`repack`]); an older storage format is migrated first. The ledger must
/// not be open elsewhere (`tom serve` stopped): the store refuses a second process. What is
/// hashed and signed is not touched, so `tom verify` answers as before.
pub fn compact(data_dir: &Path) -> Result<CompactReport, LedgerError> {
    let path = data_dir.join(store::STORE_FILE);
    if !path.exists() {
        return Err(LedgerError::Internal(format!(
            "no ledger store at {}",
            path.display()
        )));
    }
    let internal =
        |e: String| LedgerError::Internal(format!("ledger store {}: {e}", path.display()));
    super::block_journal::check_replayed(data_dir, "compact")
        .map_err(|e| LedgerError::Unavailable(format!("{}: {e}", data_dir.display())))?;
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let file_before = size();
    let mut db = redb::Database::open(&path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::Unavailable(format!(
            "ledger store {} is open in another process (stop tom serve first)",
            path.display()
        )),
        e => internal(e.to_string()),
    })?;
    store::upgrade(&db).map_err(internal)?;
    let tables = repack(&mut db, 100_000).map_err(internal)?;
    drop(db);
    Ok(CompactReport {
        tables,
        file_before,
        file_after: size(),
    })
}

/// What [`compact`] did.
#[derive(Debug, Clone)]
pub struct CompactReport {
    pub tables: Vec<RepackedTable>,
    /// The store file's length before and after.
    pub file_before: u64,
    pub file_after: u64,
}

impl std::fmt::Display for CompactReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        for t in &self.tables {
            writeln!(
                f,
                "{}: {} entries, {:.1} MiB of pages before, {:.1} MiB after",
                t.name,
                t.entries,
                mib(t.bytes_before),
                mib(t.bytes_after)
            )?;
        }
        write!(
            f,
            "store file: {:.1} MiB before, {:.1} MiB after",
            mib(self.file_before),
            mib(self.file_after)
        )
    }
}

/// What [`repack`] did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepackedTable {
    pub name: String,
    pub entries: u64,
    /// The table's pages before and after (stored + metadata + free space in its pages).
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// The suffix of a table being rewritten by [`repack`]: one left by an interrupted run is
/// dropped by the next (the original stays in place until the rewrite is complete).
const REPACKING: &str = "_repacking";

/// Rewrite the indexes (world state, transaction index, key history) with full pages, then
/// give the freed pages back to the disk. redb splits a full leaf in half unless the new key is
/// past every key of the table, and the contract's indexes grow at the end of many prefixes at
/// once, so their leaves settle about half full; copied in key order into a new table every
/// insert is past every key, and each leaf is filled before the next is started. Each table is
/// copied in batches of `batch` rows per write transaction, so memory stays bounded; the copy
/// replaces the original in one transaction at the end, so an interrupted run changes nothing
/// (its partial copy is dropped by the next run). The block log is not touched: its chunks
/// already fill their pages, and it is the record.
///
/// Needs the store to itself (`tom serve` stopped): redb allows one process per file.
fn repack(db: &mut redb::Database, batch: usize) -> Result<Vec<RepackedTable>, String> {
    let out = vec![
        repack_table(db, STATE, batch)?,
        repack_table(db, TX_IDS, batch)?,
        repack_table(db, HISTORY, batch)?,
    ];
    db.compact()
        .map_err(|e| format!("compacting the store: {e}"))?;
    Ok(out)
}

fn repack_table<K, V>(
    db: &redb::Database,
    table: TableDefinition<K, V>,
    batch: usize,
) -> Result<RepackedTable, String>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle};
    let name = table.name().to_owned();
    let copy_name = format!("{name}{REPACKING}");
    let copy: TableDefinition<K, V> = TableDefinition::new(&copy_name);
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("repacking {name}: {what}: {e}");
    let bytes_of = |stats: redb::TableStats| {
        stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes()
    };
    let (entries, bytes_before) = {
        let txn = db.begin_read().map_err(|e| fail("begin read", &e))?;
        let t = txn.open_table(table).map_err(|e| fail("open", &e))?;
        (
            t.len().map_err(|e| fail("count", &e))?,
            bytes_of(t.stats().map_err(|e| fail("stats", &e))?),
        )
    };
    (|| {
        let wtx = db.begin_write().map_err(|e| fail("begin write", &e))?;
        wtx.delete_table(copy)
            .map_err(|e| fail("drop an old copy", &e))?;
        wtx.commit().map_err(|e| fail("commit", &e))
    })()
    .map_err(|e| format!("{e} (nothing changed)"))?;
    if let Err(e) = copy_in_key_order(db, table, copy, batch, &fail) {
        // Give the partial copy's space back now (a full disk is the likely cause), not at the
        // next run; if even that fails, the next run drops it.
        let dropped = db
            .begin_write()
            .ok()
            .and_then(|wtx| wtx.delete_table(copy).ok().map(|_| wtx))
            .is_some_and(|wtx| wtx.commit().is_ok());
        return Err(if dropped {
            format!("{e} (the partial copy was dropped; nothing changed)")
        } else {
            format!("{e} (nothing changed; the partial copy is dropped by the next run)")
        });
    }
    let wtx = db.begin_write().map_err(|e| fail("begin write", &e))?;
    let copied = wtx
        .open_table(copy)
        .map_err(|e| fail("open copy", &e))?
        .len()
        .map_err(|e| fail("count copy", &e))?;
    if copied != entries {
        return Err(fail(
            "check",
            &format!("copied {copied} of {entries} entries; the original is kept"),
        ));
    }
    wtx.delete_table(table)
        .map_err(|e| fail("drop original", &e))?;
    wtx.rename_table(copy, table)
        .map_err(|e| fail("rename copy", &e))?;
    wtx.commit().map_err(|e| fail("commit", &e))?;
    let txn = db.begin_read().map_err(|e| fail("begin read", &e))?;
    let bytes_after = bytes_of(
        txn.open_table(table)
            .map_err(|e| fail("open", &e))?
            .stats()
            .map_err(|e| fail("stats", &e))?,
    );
    Ok(RepackedTable {
        name,
        entries,
        bytes_before,
        bytes_after,
    })
}

/// Copy every row of `table` into `copy` in key order, `batch` rows per write transaction.
fn copy_in_key_order<K, V>(
    db: &redb::Database,
    table: TableDefinition<K, V>,
    copy: TableDefinition<K, V>,
    batch: usize,
    fail: &dyn Fn(&str, &dyn std::fmt::Display) -> String,
) -> Result<(), String>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    // The last key copied, as bytes: each batch resumes after it.
    let mut after: Option<Vec<u8>> = None;
    loop {
        let wtx = db.begin_write().map_err(|e| fail("begin write", &e))?;
        let copied = {
            let from = wtx.open_table(table).map_err(|e| fail("open", &e))?;
            let mut to = wtx.open_table(copy).map_err(|e| fail("open copy", &e))?;
            let rows = match &after {
                None => from.range::<K::SelfType<'_>>(..),
                Some(last) => from.range::<K::SelfType<'_>>((
                    std::ops::Bound::Excluded(K::from_bytes(last)),
                    std::ops::Bound::Unbounded,
                )),
            }
            .map_err(|e| fail("read", &e))?;
            let mut copied = 0usize;
            for row in rows.take(batch) {
                let (key, value) = row.map_err(|e| fail("read", &e))?;
                to.insert(key.value(), value.value())
                    .map_err(|e| fail("write", &e))?;
                after = Some(K::as_bytes(&key.value()).as_ref().to_vec());
                copied += 1;
            }
            copied
        };
        wtx.commit().map_err(|e| fail("commit", &e))?;
        if copied < batch {
            return Ok(());
        }
    }
}
