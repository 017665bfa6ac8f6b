//! The embedded ledger's storage format version: a format-1 data directory (blocks stored whole,
//! history entries holding their values, no `meta` table) is migrated in place when the ledger
//! opens, and answers and verifies as before; a store of a newer format is refused, by
//! `EmbeddedLedger::open` and by `tom verify`, with a message naming the format found.

mod embedded_common;

use std::path::Path;

use embedded_common::*;
use redb::{ReadableDatabase, ReadableTable};
use serde_json::json;
use tom_gateway::ledger::embedded::codec::{RawBlock, Transaction};
use tom_gateway::ledger::embedded::store::{
    self, BLOCKS, CERTS, FORMAT_VERSION, HISTORY, META, STORE_FILE,
};
use tom_gateway::ledger::embedded::{verify, EmbeddedLedger, EmbeddedOptions};
use tom_gateway::ledger::Ledger;

async fn build(dir: &Path) -> serde_json::Value {
    let ledger = EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap();
    register_org1(&ledger).await;
    identify(&ledger, "tl-1", "traffic-light-1").await;
    let device = signer("org1", "traffic-light-1");
    for i in 0..3 {
        let arg = bytes(&record_data_request(
            &format!("reading-{i}"),
            "tl-1",
            "traffic-light-1",
        ));
        ledger.submit(&device, "RecordData", &arg).await.unwrap();
    }
    let history = query(&ledger, "GetHistory", json!({ "id": "tl-1" })).await;
    ledger.shutdown();
    history
}

/// Rewrite a store as format 1 wrote it: canonical blocks, history entries with the transaction
/// id, timestamp and value, and no `meta` or `certs` table.
fn downgrade_to_format_1(dir: &Path) {
    let db = redb::Database::open(dir.join(STORE_FILE)).unwrap();
    let mut blocks = Vec::new();
    {
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(BLOCKS).unwrap();
        let certs = txn.open_table(CERTS).unwrap();
        for row in table.iter().unwrap() {
            let (number, _) = row.unwrap();
            let canonical = store::read_block(&table, &certs, number.value())
                .unwrap()
                .unwrap();
            blocks.push((number.value(), canonical));
        }
    }
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(BLOCKS).unwrap();
        let mut history = txn.open_table(HISTORY).unwrap();
        for (number, canonical) in &blocks {
            table.insert(*number, canonical.as_slice()).unwrap();
            let raw = RawBlock::decode(canonical).unwrap();
            for (index, tx) in raw.transactions.iter().enumerate() {
                let tx = Transaction::decode(tx).unwrap();
                if !tx.code.is_valid() {
                    continue;
                }
                for (key, value) in &tx.rwset.writes {
                    let entry = store::encode_modification_v1(
                        &tx.proposal.tx_id,
                        tx.proposal.timestamp,
                        value.as_deref(),
                    );
                    history
                        .insert((key.as_str(), *number, index as u32), entry.as_slice())
                        .unwrap();
                }
            }
        }
    }
    txn.delete_table(META).unwrap();
    txn.delete_table(CERTS).unwrap();
    txn.commit().unwrap();
}

fn format_in(dir: &Path) -> Option<u64> {
    let db = redb::Database::open(dir.join(STORE_FILE)).unwrap();
    store::format_of(&db).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_store_is_migrated_on_open_and_answers_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let history = build(dir.path()).await;
    assert_eq!(format_in(dir.path()), Some(FORMAT_VERSION));
    verify(dir.path()).unwrap();

    downgrade_to_format_1(dir.path());
    assert_eq!(format_in(dir.path()), Some(1));
    // Verification only reads: it says what to do instead of misreading the old layout.
    let err = verify(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("storage format 1") && err.contains("tom serve"),
        "{err}"
    );
    let old_size = std::fs::metadata(dir.path().join(STORE_FILE))
        .unwrap()
        .len();

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
    assert!(old_size > 0);
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
