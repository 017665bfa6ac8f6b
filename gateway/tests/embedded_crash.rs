//! A process crash: a child process submitting from 32 tasks is killed with SIGKILL while
//! transactions are in flight. Every transaction it had acknowledged must be in the reopened
//! ledger, in the block it was told, and the log must verify: with the default checkpoint
//! interval, with every block only in the block journal (no store sync after the first), and
//! with a durable store commit per block (no journal).
//!
//! The child is this test binary itself, re-run with `TOM_CRASH_CHILD_DIR` set.

mod embedded_common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use embedded_common::*;
use tom_gateway::ledger::embedded::{
    block_journal, verify, EmbeddedLedger, EmbeddedOptions, ValidationCode,
};
use tom_gateway::ledger::Ledger;

const CHILD_ENV: &str = "TOM_CRASH_CHILD_DIR";

fn options(store_sync: Option<Duration>) -> EmbeddedOptions {
    let mut options = EmbeddedOptions::default();
    if let Some(interval) = store_sync {
        options.store_sync_interval = interval;
    }
    options
}

/// In the child: submit RecordData forever, printing each acknowledgement once it is durable.
fn child(dir: &std::path::Path, store_sync: Option<Duration>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ledger = Arc::new(EmbeddedLedger::open(dir, options(store_sync)).unwrap());
        register_org1(ledger.as_ref()).await;
        identify(ledger.as_ref(), "tl-1", "traffic-light-1").await;
        let device = signer("org1", "traffic-light-1");
        let mut tasks = Vec::new();
        for task in 0..32 {
            let (ledger, device) = (ledger.clone(), device.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let arg = bytes(&record_data_request(
                        &format!("r-{task}-{i}"),
                        "tl-1",
                        "traffic-light-1",
                    ));
                    let submitted = ledger.submit(&device, "RecordData", &arg).await.unwrap();
                    // One write per line: the parent reads whole lines only.
                    println!("ACK {} {}", submitted.tx_id, submitted.block);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// Run the child (this test, re-run) until it has acknowledged 300 transactions, kill it with
/// SIGKILL, and return its data directory and the acknowledgements.
fn kill_after_300(
    test_name: &str,
    store_sync: Option<Duration>,
) -> Option<(tempfile::TempDir, Vec<(String, u64)>)> {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(std::path::Path::new(&dir), store_sync);
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut process = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = process.stdout.take().unwrap();
    let mut acknowledged = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(ack) = line.strip_prefix("ACK ") {
            let (tx_id, block) = ack.split_once(' ').unwrap();
            acknowledged.push((tx_id.to_owned(), block.parse::<u64>().unwrap()));
            if acknowledged.len() == 300 {
                break;
            }
        }
    }
    // SIGKILL: no shutdown, no drop, no flush; submissions are in flight.
    process.kill().unwrap();
    process.wait().unwrap();
    assert_eq!(acknowledged.len(), 300, "the child stopped early");
    Some((dir, acknowledged))
}

/// Reopen after the kill: every acknowledged transaction is where it was told to be, and the
/// log verifies.
fn check_reopened(dir: &std::path::Path, acknowledged: &[(String, u64)]) {
    let ledger = EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap();
    for (tx_id, block) in acknowledged {
        let status = ledger
            .transaction_status(tx_id)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged tx {tx_id} is lost"));
        assert_eq!((status.block, status.code), (*block, ValidationCode::Valid));
    }
    let height = ledger.height();
    assert!(height > acknowledged.iter().map(|(_, b)| *b).max().unwrap());
    ledger.shutdown();
    assert_eq!(
        block_journal::pending(dir).unwrap(),
        0,
        "a clean stop empties the journal"
    );
    let report = verify(dir).unwrap();
    assert_eq!(report.blocks, height);
    assert!(report.transactions >= 302);
}

#[test]
fn a_killed_process_keeps_every_acknowledged_transaction() {
    let test = "a_killed_process_keeps_every_acknowledged_transaction";
    if let Some((dir, acknowledged)) = kill_after_300(test, None) {
        check_reopened(dir.path(), &acknowledged);
    }
}

#[test]
fn blocks_acknowledged_only_in_the_journal_are_replayed_after_a_kill() {
    let test = "blocks_acknowledged_only_in_the_journal_are_replayed_after_a_kill";
    // No store sync after the first block: every later block is durable only in the journal.
    let Some((dir, acknowledged)) = kill_after_300(test, Some(Duration::from_secs(3600))) else {
        return;
    };
    let pending = block_journal::pending(dir.path()).unwrap();
    assert!(pending > 0, "the acknowledged blocks are in the journal");
    // The store alone is not the log yet: an auditor is told so, not given a short answer.
    let refused = verify(dir.path()).unwrap_err().to_string();
    assert!(
        refused.contains("block journal") && refused.contains("start `tom serve`"),
        "{refused}"
    );
    check_reopened(dir.path(), &acknowledged);
}

#[test]
fn a_killed_process_with_a_durable_store_commit_per_block_keeps_everything() {
    let test = "a_killed_process_with_a_durable_store_commit_per_block_keeps_everything";
    if let Some((dir, acknowledged)) = kill_after_300(test, Some(Duration::ZERO)) {
        assert_eq!(block_journal::pending(dir.path()).unwrap(), 0);
        check_reopened(dir.path(), &acknowledged);
    }
}
