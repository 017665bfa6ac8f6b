//! The embedded ledger's storage format version: a format-1 data directory (blocks stored whole,
//! history entries holding their values, no `meta` table) or a format-2 one (state values without
//! an encoding, history keyed by the whole key) is migrated in place when the ledger
//! opens, and answers and verifies as before; a format-3 one (before value dictionaries) gains
//! them without a rewrite; a store of a newer format is refused, by `EmbeddedLedger::open` and
//! by `tom verify`, with a message naming the format found. Values compressed with the store's
//! trained dictionary read back in another process, and a damaged dictionary is refused.

mod embedded_common;

use std::path::Path;

use embedded_common::*;
use redb::{ReadableDatabase, ReadableTable};
use serde_json::json;
use tom_gateway::ledger::embedded::codec::{RawBlock, Transaction};
use tom_gateway::ledger::embedded::store::{
    self, BLOCKS, CERTS, FORMAT_VERSION, HISTORY, META, STATE, STORE_FILE,
};
use tom_gateway::ledger::embedded::{dictionary, verify, EmbeddedLedger, EmbeddedOptions};
use tom_gateway::ledger::Ledger;

async fn build(dir: &Path) -> serde_json::Value {
    let ledger = EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap();
    device_with_readings(&ledger, 3).await;
    let history = query(&ledger, "GetHistory", json!({ "id": "tl-1" })).await;
    ledger.shutdown();
    history
}

/// Rewrite a store as format `format` (1 or 2) wrote it. Format 1: canonical blocks, history
/// entries keyed by the whole key holding the transaction id, timestamp and value, state values
/// without an encoding byte, no `meta` or `certs` table. Format 2: the same state, history
/// entries of a flag and a value hash, and compact blocks without compression (here with no
/// certificate cut out, which format 2 also reads).
fn downgrade(dir: &Path, format: u64) {
    let db = redb::Database::open(dir.join(STORE_FILE)).unwrap();
    let mut blocks = Vec::new();
    let mut state = Vec::new();
    {
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(BLOCKS).unwrap();
        let certs = txn.open_table(CERTS).unwrap();
        for block in store::StoredBlocks::from(&table, 0).unwrap() {
            let (number, stored) = block.unwrap();
            blocks.push((number, store::expand_block(&certs, &stored).unwrap()));
        }
        for row in txn.open_table(STATE).unwrap().iter().unwrap() {
            let (key, value) = row.unwrap();
            let key = store::unpack_key(key.value()).unwrap();
            let found = store::decode_versioned(&key, value.value()).unwrap();
            state.push((
                key,
                store::encode_fixed_version(found.version, &found.value),
            ));
        }
    }
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(store::BLOCKS_FORMAT_4).unwrap();
        let mut history = txn.open_table(store::HISTORY_FORMAT_2).unwrap();
        for (number, canonical) in &blocks {
            if format == 1 {
                table.insert(*number, canonical.as_slice()).unwrap();
            } else {
                // "TOMZ" 1, no certificate references, the canonical bytes.
                let mut stored = b"TOMZ\x01".to_vec();
                stored.extend_from_slice(&0u32.to_be_bytes());
                stored.extend_from_slice(&(canonical.len() as u32).to_be_bytes());
                stored.extend_from_slice(canonical);
                table.insert(*number, stored.as_slice()).unwrap();
            }
            let raw = RawBlock::decode(canonical).unwrap();
            for (index, tx) in raw.transactions.iter().enumerate() {
                let tx = Transaction::decode(tx).unwrap();
                if !tx.code.is_valid() {
                    continue;
                }
                for (key, value) in &tx.rwset.writes {
                    let entry = if format == 1 {
                        store::encode_modification_v1(
                            &tx.proposal.tx_id,
                            tx.proposal.timestamp,
                            value.as_deref(),
                        )
                    } else {
                        store::encode_modification(value.as_deref()).to_vec()
                    };
                    history
                        .insert((key.as_str(), *number, index as u32), entry.as_slice())
                        .unwrap();
                }
            }
        }
        let mut old_state = txn.open_table(store::STATE_FORMAT_2).unwrap();
        for (key, value) in &state {
            old_state.insert(key.as_str(), value.as_slice()).unwrap();
        }
    }
    txn.delete_table(STATE).unwrap();
    txn.delete_table(HISTORY).unwrap();
    txn.delete_table(BLOCKS).unwrap();
    unpack_tx_ids(&txn);
    if format == 1 {
        txn.delete_table(META).unwrap();
        txn.delete_table(CERTS).unwrap();
    } else {
        txn.open_table(META).unwrap().insert("format", 2).unwrap();
    }
    txn.commit().unwrap();
}

/// The transaction index as formats 1 to 4 kept it: keyed by each id's 64 hex digits.
fn unpack_tx_ids(txn: &redb::WriteTransaction) {
    {
        let packed = txn.open_table(store::TX_IDS).unwrap();
        let mut old = txn.open_table(store::TX_IDS_FORMAT_4).unwrap();
        for row in packed.iter().unwrap() {
            let (tx_id, position) = row.unwrap();
            old.insert(hex::encode(tx_id.value()).as_str(), position.value())
                .unwrap();
        }
    }
    txn.delete_table(store::TX_IDS).unwrap();
}

fn format_in(dir: &Path) -> Option<u64> {
    let db = redb::Database::open(dir.join(STORE_FILE)).unwrap();
    store::format_of(&db).unwrap()
}

async fn an_old_store_is_migrated_on_open_and_answers_as_before(format: u64) {
    let dir = tempfile::tempdir().unwrap();
    let history = build(dir.path()).await;
    assert_eq!(format_in(dir.path()), Some(FORMAT_VERSION));
    verify(dir.path()).unwrap();

    downgrade(dir.path(), format);
    assert_eq!(format_in(dir.path()), Some(format));
    // Verification only reads: it says what to do instead of misreading the old layout.
    let err = verify(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(&format!("storage format {format}")) && err.contains("tom serve"),
        "{err}"
    );

    let ledger = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap();
    assert_eq!(
        query(&ledger, "GetHistory", json!({ "id": "tl-1" })).await,
        history
    );
    // The migrated log keeps growing.
    ledger
        .submit(
            &signer("org1", "traffic-light-1"),
            "RecordData",
            &bytes(&record_data_request("after", "tl-1", "traffic-light-1")),
        )
        .await
        .unwrap();
    ledger.shutdown();
    drop(ledger);
    assert_eq!(format_in(dir.path()), Some(FORMAT_VERSION));
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.transactions, 6, "{report}");
    no_old_tables_in(dir.path());
}

/// The tables of older formats are gone after a migration, not left beside the new ones.
fn no_old_tables_in(dir: &Path) {
    use redb::TableHandle;
    let db = redb::Database::open(dir.join(STORE_FILE)).unwrap();
    let txn = db.begin_read().unwrap();
    let names: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|t| t.name().to_owned())
        .collect();
    for old in [
        store::STATE_FORMAT_2.name(),
        store::HISTORY_FORMAT_2.name(),
        store::STATE_FORMAT_4.name(),
        store::BLOCKS_FORMAT_4.name(),
        store::TX_IDS_FORMAT_4.name(),
    ] {
        assert!(!names.iter().any(|n| n == old), "{old} left in {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_store_is_migrated_on_open_and_answers_as_before() {
    an_old_store_is_migrated_on_open_and_answers_as_before(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_2_store_is_migrated_on_open_and_answers_as_before() {
    an_old_store_is_migrated_on_open_and_answers_as_before(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_a_newer_format_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path()).await;
    {
        let db = redb::Database::open(dir.path().join(STORE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert("format", 99).unwrap();
        txn.commit().unwrap();
    }
    let err = match EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()) {
        Ok(_) => panic!("a format-99 store was opened"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("storage format 99") && err.contains("newer tom"),
        "{err}"
    );
    let err = verify(dir.path()).unwrap_err().to_string();
    assert!(err.contains("storage format 99"), "{err}");
}

/// Rewrite a store as format 3 or 4 kept its world state and blocks: keyed by the keys as the
/// contract wrote them (`world_state`), versions of 12 bytes, each block whole in one row;
/// format 3 without the dictionary table. Returns the stored key bytes of both layouts.
fn unpack_state(dir: &Path, format: u64) -> (u64, u64) {
    let db = redb::Database::open(dir.join(STORE_FILE)).unwrap();
    let txn = db.begin_write().unwrap();
    let (mut packed, mut unpacked) = (0, 0);
    {
        let chunks = txn.open_table(BLOCKS).unwrap();
        let mut whole = txn.open_table(store::BLOCKS_FORMAT_4).unwrap();
        for block in store::StoredBlocks::from(&chunks, 0).unwrap() {
            let (number, stored) = block.unwrap();
            whole.insert(number, stored.as_slice()).unwrap();
        }
    }
    txn.delete_table(BLOCKS).unwrap();
    unpack_tx_ids(&txn);
    {
        let mut state = txn.open_table(STATE).unwrap();
        let mut old = txn.open_table(store::STATE_FORMAT_4).unwrap();
        while let Some((key, value)) = state.pop_first().unwrap() {
            let unpacked_key = store::unpack_key(key.value()).unwrap();
            packed += key.value().len() as u64;
            unpacked += unpacked_key.len() as u64;
            let (version, encoded) = store::version_and_encoded(value.value()).unwrap();
            old.insert(
                unpacked_key.as_str(),
                store::encode_fixed_version(version, encoded).as_slice(),
            )
            .unwrap();
        }
    }
    txn.delete_table(STATE).unwrap();
    if format == 3 {
        txn.delete_table(dictionary::DICTIONARIES).unwrap();
    }
    txn.open_table(META)
        .unwrap()
        .insert("format", format)
        .unwrap();
    txn.commit().unwrap();
    (packed, unpacked)
}

/// Formats 3 and 4 (keys stored as the contract wrote them; format 3 before value dictionaries)
/// open as format 5: keys packed, values kept, and every answer the same, reads of one key and
/// ranges (records by agent, paged, and the lineage) alike.
async fn a_store_of_unpacked_keys_is_packed_on_open(format: u64) {
    let dir = tempfile::tempdir().unwrap();
    let history = build(dir.path()).await;
    let ledger = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let answers = |ledger: EmbeddedLedger| async move {
        let agent = format!("{}/traffic-light-1", tom_fixtures::org("org1").msp_id);
        let first = query(
            &ledger,
            "QueryRecords",
            json!({ "agent": agent, "page_size": 2 }),
        )
        .await;
        let bookmark = first["bookmark"].as_str().unwrap().to_owned();
        assert!(!bookmark.is_empty(), "{first}");
        let second = query(
            &ledger,
            "QueryRecords",
            json!({ "agent": agent, "page_size": 2, "bookmark": bookmark }),
        )
        .await;
        let lineage = query(
            &ledger,
            "GetLineage",
            json!({ "id": "reading-2", "direction": "up" }),
        )
        .await;
        let devices = query(&ledger, "ListDevices", json!({})).await;
        ledger.shutdown();
        (first, second, lineage, devices)
    };
    let before = answers(ledger).await;
    let (packed, unpacked) = unpack_state(dir.path(), format);
    assert!(
        packed * 10 < unpacked * 8,
        "packed keys take {packed} bytes, unpacked {unpacked}"
    );
    let err = verify(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(&format!("storage format {format}")) && err.contains("tom serve"),
        "{err}"
    );
    let ledger = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap();
    assert_eq!(
        query(&ledger, "GetHistory", json!({ "id": "tl-1" })).await,
        history
    );
    assert_eq!(answers(ledger).await, before);
    assert_eq!(format_in(dir.path()), Some(FORMAT_VERSION));
    verify(dir.path()).unwrap();
    no_old_tables_in(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_3_store_is_packed_and_gains_value_dictionaries_on_open() {
    a_store_of_unpacked_keys_is_packed_on_open(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_4_store_is_packed_on_open() {
    a_store_of_unpacked_keys_is_packed_on_open(4).await;
}

/// Stored state values by encoding byte (after the version).
fn encodings(dir: &Path) -> std::collections::BTreeMap<u8, usize> {
    let db = redb::Database::open(dir.join(STORE_FILE)).unwrap();
    let txn = db.begin_read().unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for row in txn.open_table(STATE).unwrap().iter().unwrap() {
        let (_, value) = row.unwrap();
        *seen
            .entry(store::value_encoding(value.value()).unwrap())
            .or_default() += 1;
    }
    seen
}

/// The committer trains a dictionary on the values it has written, stores it with a block, and
/// new values are compressed with it; another process (`tom verify`) reads them from the
/// dictionary in the store, and a damaged dictionary is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_compressed_with_a_dictionary_the_store_keeps() {
    let data = tempfile::tempdir().unwrap();
    // `tom verify --data-dir` reads the ledger in `<data dir>/ledger`.
    let dir = data.path().join("ledger");
    let dir = dir.as_path();
    let options = || EmbeddedOptions {
        dictionary_samples: 24,
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(dir, options()).unwrap();
    register_org1(&ledger).await;
    identify(&ledger, "tl-1", "traffic-light-1").await;
    let device = signer("org1", "traffic-light-1");
    let mut i = 0;
    let started = std::time::Instant::now();
    // Write until the dictionary is in use (training runs beside the committer), then some more.
    let mut after = 0;
    while after < 10 {
        let arg = bytes(&record_data_request(
            &format!("reading-{i}"),
            "tl-1",
            "traffic-light-1",
        ));
        ledger.submit(&device, "RecordData", &arg).await.unwrap();
        i += 1;
        if i > 30 && encodings_live(&ledger) {
            after += 1;
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "no dictionary after {i} records"
        );
    }
    let last = format!("reading-{}", i - 1);
    let entity = query(&ledger, "GetEntity", json!({ "id": last })).await;
    ledger.shutdown();
    drop(ledger);

    let seen = encodings(dir);
    assert!(seen.get(&4).copied().unwrap_or(0) >= 10, "{seen:?}");
    assert!(
        seen.get(&2).copied().unwrap_or(0) > 0,
        "values before the dictionary stay: {seen:?}"
    );
    // A fresh process reads the dictionary from the store.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tom"))
        .args(["verify", "--data-dir", data.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tom verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ledger = EmbeddedLedger::open(dir, options()).unwrap();
    assert_eq!(
        query(&ledger, "GetEntity", json!({ "id": last })).await,
        entity
    );
    ledger.shutdown();
    drop(ledger);

    // Damage the dictionary: refused by name, by the node and by tom verify.
    let id = {
        let db = redb::Database::open(dir.join(STORE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        let id = txn
            .open_table(META)
            .unwrap()
            .get(dictionary::CURRENT_KEY)
            .unwrap()
            .unwrap()
            .value();
        {
            let mut table = txn.open_table(dictionary::DICTIONARIES).unwrap();
            let mut damaged = table.get(id).unwrap().unwrap().value().to_vec();
            damaged[200] ^= 0x55;
            table.insert(id, damaged.as_slice()).unwrap();
        }
        txn.commit().unwrap();
        id
    };
    let named = format!("value dictionary {id:016x} is damaged");
    let err = match EmbeddedLedger::open(dir, options()) {
        Ok(_) => panic!("a store with a damaged dictionary was opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&named), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tom"))
        .args(["verify", "--data-dir", data.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&named),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the ledger's endorsers compress with a dictionary yet (read from the store).
fn encodings_live(ledger: &EmbeddedLedger) -> bool {
    ledger.value_dictionary().is_some()
}
