//! `tom compact`: the embedded ledger's indexes rewritten with full pages. Every answer stays the
//! same (reads of one key, ranges, pages after a bookmark), `tom verify` still passes, the pages
//! the world state takes shrink, an interrupted run changes nothing and is cleaned up by the
//! next, and a ledger open in another process is not touched.

mod embedded_common;

use std::path::Path;

use embedded_common::*;
use redb::ReadableDatabase;
use serde_json::{json, Value};
use tom_gateway::ledger::embedded::store::{STATE, STORE_FILE};
use tom_gateway::ledger::embedded::{compact, verify, EmbeddedLedger, EmbeddedOptions};
use tom_gateway::ledger::{Ledger, LedgerError};

const DEVICES: [(&str, &str); 3] = [
    ("tl-1", "traffic-light-1"),
    ("gw-1", "roadside-gateway-1"),
    ("edge-1", "edge-node-1"),
];

/// A ledger whose indexes grow at the end of several ranges at once (three devices taking turns),
/// as a real one does.
async fn grow(dir: &Path, records: usize) {
    let ledger = EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap();
    register_org1(&ledger).await;
    for (id, name) in DEVICES {
        identify(&ledger, id, name).await;
    }
    for i in 0..records {
        let (id, name) = DEVICES[i % DEVICES.len()];
        let arg = bytes(&record_data_request(&format!("reading-{i}"), id, name));
        ledger
            .submit(&signer("org1", name), "RecordData", &arg)
            .await
            .unwrap();
    }
    ledger.shutdown();
}

/// What an auditor would ask: histories, records by agent page by page, lineage, inventories.
async fn answers(dir: &Path) -> Vec<Value> {
    let ledger = EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap();
    let msp = tom_fixtures::org("org1").msp_id;
    let mut out = vec![
        query(&ledger, "GetHistory", json!({ "id": "gw-1" })).await,
        query(&ledger, "GetEntity", json!({ "id": "reading-7" })).await,
        query(
            &ledger,
            "GetLineage",
            json!({ "id": "edge-1", "direction": "down" }),
        )
        .await,
        query(&ledger, "ListDevices", json!({})).await,
    ];
    let mut bookmark = String::new();
    loop {
        let page = query(
            &ledger,
            "QueryRecords",
            json!({ "agent": format!("{msp}/traffic-light-1"), "page_size": 7, "bookmark": bookmark }),
        )
        .await;
        bookmark = page["bookmark"].as_str().unwrap_or_default().to_owned();
        out.push(page);
        if bookmark.is_empty() {
            break;
        }
    }
    ledger.shutdown();
    out
}

fn state_pages(dir: &Path) -> u64 {
    use redb::ReadableTableMetadata;
    let db = redb::Database::open(dir.join(STORE_FILE)).unwrap();
    let txn = db.begin_read().unwrap();
    let stats = txn.open_table(STATE).unwrap().stats().unwrap();
    stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacting_fills_the_pages_and_changes_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    grow(dir.path(), 240).await;
    let before = answers(dir.path()).await;
    assert!(before.len() > 10, "several pages of records");
    let pages_before = state_pages(dir.path());

    let report = compact(dir.path()).unwrap();
    let state = &report.tables[0];
    assert_eq!(state.name, "world_state_packed");
    assert_eq!(state.bytes_before, pages_before);
    assert_eq!(state.bytes_after, state_pages(dir.path()));
    assert!(
        state.bytes_after * 10 < state.bytes_before * 8,
        "world state pages {} → {} bytes",
        state.bytes_before,
        state.bytes_after
    );
    assert!(
        report.to_string().contains("world_state_packed"),
        "{report}"
    );

    verify(dir.path()).unwrap();
    assert_eq!(answers(dir.path()).await, before);
    // The ledger keeps growing after it.
    grow_more(dir.path()).await;
    verify(dir.path()).unwrap();
}

async fn grow_more(dir: &Path) {
    let ledger = EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap();
    let arg = bytes(&record_data_request("after", "tl-1", "traffic-light-1"));
    ledger
        .submit(&signer("org1", "traffic-light-1"), "RecordData", &arg)
        .await
        .unwrap();
    assert_eq!(
        query(&ledger, "GetEntity", json!({ "id": "after" })).await["id"],
        "after"
    );
    ledger.shutdown();
}

/// A run stopped before its copy replaced the original leaves the original in place; the next
/// run drops the partial copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_compaction_changes_nothing_and_is_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    grow(dir.path(), 30).await;
    let before = answers(dir.path()).await;
    let partial: redb::TableDefinition<&[u8], &[u8]> =
        redb::TableDefinition::new("world_state_packed_repacking");
    {
        let db = redb::Database::open(dir.path().join(STORE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(partial)
            .unwrap()
            .insert(&b"\x00stray"[..], &b"half a copy"[..])
            .unwrap();
        txn.commit().unwrap();
    }
    verify(dir.path()).unwrap();
    assert_eq!(answers(dir.path()).await, before);

    compact(dir.path()).unwrap();
    let db = redb::Database::open(dir.path().join(STORE_FILE)).unwrap();
    let txn = db.begin_read().unwrap();
    assert!(txn.open_table(partial).is_err(), "the partial copy is gone");
    drop(txn);
    drop(db);
    assert_eq!(answers(dir.path()).await, before);
    verify(dir.path()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_in_use_is_not_compacted_and_the_command_says_what_it_did() {
    // `tom compact --data-dir D` compacts the ledger in `D/ledger`.
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("ledger");
    grow(&dir, 3).await;
    let ledger = EmbeddedLedger::open(&dir, EmbeddedOptions::default()).unwrap();
    match compact(&dir) {
        Err(LedgerError::Unavailable(message)) => {
            assert!(message.contains("stop tom serve"), "{message}")
        }
        other => panic!("compacted a ledger in use: {other:?}"),
    }
    ledger.shutdown();
    drop(ledger);

    let tom = |data_dir: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tom"))
            .arg("compact")
            .arg("--data-dir")
            .arg(data_dir)
            .output()
            .unwrap()
    };
    let out = tom(data.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("world_state_packed") && stdout.contains("compacted in"),
        "{stdout}"
    );
    verify(&dir).unwrap();

    let empty = tempfile::tempdir().unwrap();
    let out = tom(empty.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no ledger store"), "{stderr}");
}
