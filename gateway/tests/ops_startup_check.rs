//! `tom serve` (EmbeddedLedger::open) refuses a block log that `tom verify` rejects, naming the
//! first bad block, even when only a block in the middle was changed; it checks transactions
//! incrementally from a checkpoint signed by the node key.

mod embedded_common;

use std::path::Path;

use embedded_common::*;
use tom_gateway::ledger::embedded::codec::RawBlock;
use tom_gateway::ledger::embedded::store::{self, read_block, BLOCKS, CERTS, STORE_FILE};
use tom_gateway::ledger::embedded::{verify, EmbeddedLedger, EmbeddedOptions};

/// Blocks 0 (genesis), 1 (RegisterOrg), 2 (IdentifyDevice), 3, 4 (RecordData).
async fn build_log(dir: &Path) {
    let ledger = EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap();
    device_with_readings(&ledger, 2).await;
    ledger.shutdown();
}

/// Flip one byte inside the first transaction of block `number`, through redb (the store stays
/// well-formed; only the ledger's own checks can tell).
fn flip_transaction_byte(dir: &Path, number: u64) {
    use redb::ReadableDatabase;
    let db = redb::Database::open(dir.join(STORE_FILE)).unwrap();
    let mut block = {
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(BLOCKS).unwrap();
        let certs = txn.open_table(CERTS).unwrap();
        // The canonical bytes (the store keeps blocks compact); written back as they are.
        read_block(&table, &certs, number).unwrap().unwrap()
    };
    let offset = {
        let raw = RawBlock::decode(&block).unwrap();
        let tx = raw.transactions[0];
        tx.as_ptr() as usize - block.as_ptr() as usize + tx.len() / 2
    };
    block[offset] ^= 0x01;
    let txn = db.begin_write().unwrap();
    store::put_stored_block(&mut txn.open_table(BLOCKS).unwrap(), number, &block).unwrap();
    txn.commit().unwrap();
}

fn open_error(dir: &Path) -> String {
    match EmbeddedLedger::open(dir, EmbeddedOptions::default()) {
        Ok(_) => panic!("the ledger opened on a tampered log"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_log_tampered_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path()).await;
    flip_transaction_byte(dir.path(), 2);
    let verify_error = verify(dir.path()).unwrap_err().to_string();
    assert!(verify_error.contains("block 2"), "{verify_error}");
    let message = open_error(dir.path());
    assert!(
        message.contains("block 2") && message.contains("tom verify"),
        "start-up names the first bad block: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_does_not_hide_tampering_before_it() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path()).await;
    // A clean restart writes the checkpoint at the tip (5 blocks) and opens fine.
    EmbeddedLedger::open(dir.path(), EmbeddedOptions::default())
        .unwrap()
        .shutdown();
    let checkpoint = std::fs::read_to_string(dir.path().join("verified.checkpoint")).unwrap();
    assert!(checkpoint.contains("height 5"), "{checkpoint}");
    // Now a block below the checkpoint is changed: still refused, naming it.
    flip_transaction_byte(dir.path(), 3);
    let message = open_error(dir.path());
    assert!(message.contains("block 3"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_checkpoint_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path()).await;
    EmbeddedLedger::open(dir.path(), EmbeddedOptions::default())
        .unwrap()
        .shutdown();
    // Claim a larger verified height without the node key's signature: ignored, so the log is
    // checked in full and still opens.
    let path = dir.path().join("verified.checkpoint");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("height 5", "height 4")).unwrap();
    EmbeddedLedger::open(dir.path(), EmbeddedOptions::default())
        .unwrap()
        .shutdown();
    verify(dir.path()).unwrap();
}
