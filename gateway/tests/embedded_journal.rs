//! The block journal as an attacker sees it: a block written into `blocks.journal` behind the
//! node's back is replayed only if it is the store's next block, continues its hash chain and
//! carries the node's signature. Anything else stops the ledger from opening, names the block
//! and the reason, and changes nothing recorded.

mod embedded_common;

use embedded_common::*;
use tom_gateway::ledger::embedded::block_journal::{self, BlockJournal};
use tom_gateway::ledger::embedded::codec::{sha256, BlockHeader, RawBlock};
use tom_gateway::ledger::embedded::node_key::NodeKey;
use tom_gateway::ledger::embedded::{verify, EmbeddedLedger, EmbeddedOptions};
use tom_gateway::ledger::Ledger;

/// A ledger with a few records, cleanly stopped (its journal empty); returns its height.
async fn ledger_with_records(dir: &std::path::Path) -> u64 {
    let ledger = EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap();
    device_with_readings(&ledger, 3).await;
    let height = ledger.height();
    ledger.shutdown();
    height
}

/// A block numbered `number` after `previous_header`, carrying `transactions`, signed by `key`.
fn block_after(
    number: u64,
    previous_header: &[u8],
    transactions: &[Vec<u8>],
    key: &NodeKey,
) -> Vec<u8> {
    let tx_hashes: Vec<_> = transactions.iter().map(|t| sha256(t)).collect();
    let header = BlockHeader {
        number,
        previous_hash: sha256(previous_header),
        data_hash: BlockHeader::data_hash_of(&tx_hashes),
        timestamp: tom_contract::Timestamp::from_seconds(1_900_000_000),
        tx_hashes,
    };
    let header_bytes = header.encode();
    RawBlock::encode(
        &header_bytes,
        transactions,
        &key.sign(&header_bytes).unwrap(),
    )
}

/// Put `block` (numbered `number`) in the journal of a copy of `dir` (at `height`), then check
/// that the ledger refuses to open naming the block and `reason`, that tom verify refuses naming
/// the journal, and that without the forged journal the store is as it was.
fn refused(dir: &std::path::Path, height: u64, block: &[u8], number: u64, reason: &str) {
    let copy = copy_dir(dir);
    let (mut journal, held) = BlockJournal::open(copy.path()).unwrap();
    assert!(held.is_empty());
    journal.append(block).unwrap();
    drop(journal);

    let error = match EmbeddedLedger::open(copy.path(), EmbeddedOptions::default()) {
        Ok(_) => panic!("a forged journal block ({reason}) was replayed"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains(&format!("block {number}")) && error.contains(reason),
        "{error}"
    );
    let verify_error = verify(copy.path()).unwrap_err().to_string();
    assert!(
        verify_error.contains(block_journal::JOURNAL_FILE),
        "{verify_error}"
    );

    // Nothing recorded changed: without the forged frame the store opens at its old height
    // and verifies.
    std::fs::remove_file(copy.path().join(block_journal::JOURNAL_FILE)).unwrap();
    let ledger = EmbeddedLedger::open(copy.path(), EmbeddedOptions::default()).unwrap();
    assert_eq!(ledger.height(), height);
    ledger.shutdown();
    assert_eq!(verify(copy.path()).unwrap().blocks, height);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_block_the_node_did_not_sign_or_chain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let height = ledger_with_records(dir.path()).await;
    let tip = read_block(dir.path(), height - 1);
    let tip_raw = RawBlock::decode(&tip).unwrap();
    // The tip's own transactions, replayed into a new block: the bytes are genuine, only the
    // block around them is forged.
    let transactions: Vec<Vec<u8>> = tip_raw.transactions.iter().map(|t| t.to_vec()).collect();

    // Signed by another key.
    let elsewhere = tempfile::tempdir().unwrap();
    let foreign = NodeKey::load_or_create(elsewhere.path()).unwrap();
    let forged = block_after(height, tip_raw.header_bytes, &transactions, &foreign);
    refused(
        dir.path(),
        height,
        &forged,
        height,
        "the node key did not sign it",
    );

    // Signed by the node's own key (a stolen key) but not after the tip: the chain breaks.
    let node = NodeKey::load_or_create(dir.path()).unwrap();
    let before_tip = read_block(dir.path(), height - 2);
    let before_tip_raw = RawBlock::decode(&before_tip).unwrap();
    let forked = block_after(height, before_tip_raw.header_bytes, &transactions, &node);
    refused(
        dir.path(),
        height,
        &forked,
        height,
        "does not continue the store's hash chain",
    );

    // A block with a gap before it.
    let skipping = block_after(height + 1, tip_raw.header_bytes, &transactions, &node);
    refused(
        dir.path(),
        height,
        &skipping,
        height + 1,
        &format!("the store's next block is {height}"),
    );

    // Transactions that do not hash to the header.
    let mut swapped = RawBlock::decode(&forged).unwrap();
    let header_bytes = block_after(height, tip_raw.header_bytes, &transactions, &node);
    let signed = RawBlock::decode(&header_bytes).unwrap();
    swapped.transactions = vec![before_tip_raw.transactions[0]];
    let mismatched = RawBlock::encode(
        signed.header_bytes,
        &swapped
            .transactions
            .iter()
            .map(|t| t.to_vec())
            .collect::<Vec<_>>(),
        signed.signature,
    );
    refused(
        dir.path(),
        height,
        &mismatched,
        height,
        "its transactions do not hash to its header",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_block_the_store_has_already_is_skipped() {
    // The journal is emptied after each store sync without an fsync: if that emptying is lost,
    // the journal still holds blocks the store has, and replay must skip them, not apply them
    // twice.
    let dir = tempfile::tempdir().unwrap();
    let height = ledger_with_records(dir.path()).await;
    let (mut journal, _) = BlockJournal::open(dir.path()).unwrap();
    for number in 1..height {
        journal.append(&read_block(dir.path(), number)).unwrap();
    }
    drop(journal);
    let before = query_history(dir.path()).await;
    let ledger = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap();
    assert_eq!(ledger.height(), height);
    ledger.shutdown();
    assert_eq!(block_journal::pending(dir.path()).unwrap(), 0);
    assert_eq!(query_history(dir.path()).await, before);
    assert_eq!(verify(dir.path()).unwrap().blocks, height);
}

async fn query_history(dir: &std::path::Path) -> serde_json::Value {
    // Read the store's answer without the journal in the way.
    let copy = copy_dir(dir);
    let _ = std::fs::remove_file(copy.path().join(block_journal::JOURNAL_FILE));
    let ledger = EmbeddedLedger::open(copy.path(), EmbeddedOptions::default()).unwrap();
    let answer = query(&ledger, "GetHistory", serde_json::json!({ "id": "tl-1" })).await;
    ledger.shutdown();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_burst_the_store_syncs_by_itself_and_empties_the_journal() {
    // Blocks journalled and then a quiet spell: the committer syncs the store within an
    // interval of the last sync without waiting for another block to carry it, so the next
    // submitter does not pay for the write-back and a crash meanwhile has nothing to replay.
    let dir = tempfile::tempdir().unwrap();
    let interval = std::time::Duration::from_millis(1500);
    let options = EmbeddedOptions {
        store_sync_interval: interval,
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(dir.path(), options).unwrap();
    device_with_readings(&ledger, 1).await;
    let journal = dir.path().join(block_journal::JOURNAL_FILE);
    let journal_bytes = || std::fs::metadata(&journal).map(|m| m.len()).unwrap();
    // A block that is not itself a store sync lands in the journal.
    let device = signer("org1", "traffic-light-1");
    let mut extra = 0;
    while journal_bytes() == 0 {
        extra += 1;
        assert!(extra < 20, "no block was journalled");
        let arg = bytes(&record_data_request(
            &format!("extra-{extra}"),
            "tl-1",
            "traffic-light-1",
        ));
        ledger.submit(&device, "RecordData", &arg).await.unwrap();
    }
    let height = ledger.height();
    let quiet = std::time::Instant::now();
    while journal_bytes() > 0 {
        assert!(
            quiet.elapsed() < interval + std::time::Duration::from_secs(5),
            "the journal still holds {} bytes {:?} after the last block",
            journal_bytes(),
            quiet.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(ledger.height(), height, "a block was committed meanwhile");

    // The store alone now has every block: a copy of the directory taken while the node runs,
    // opened without any journal, is at the same height and verifies.
    let copy = copy_dir(dir.path());
    let _ = std::fs::remove_file(copy.path().join(block_journal::JOURNAL_FILE));
    let reopened = EmbeddedLedger::open(copy.path(), EmbeddedOptions::default()).unwrap();
    assert_eq!(reopened.height(), height);
    reopened.shutdown();
    assert_eq!(verify(copy.path()).unwrap().blocks, height);

    // And the ledger goes on as before.
    let arg = bytes(&record_data_request(
        "after-quiet",
        "tl-1",
        "traffic-light-1",
    ));
    let submitted = ledger.submit(&device, "RecordData", &arg).await.unwrap();
    assert_eq!(submitted.block, height);
    ledger.shutdown();
}
