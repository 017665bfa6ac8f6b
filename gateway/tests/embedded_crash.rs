//! A process crash: a child process submitting from 32 tasks is killed with SIGKILL while
//! transactions are in flight. Every transaction it had acknowledged must be in the reopened
//! ledger, in the block it was told, and the log must verify.
//!
//! The child is this test binary itself, re-run with `TOM_CRASH_CHILD_DIR` set.

mod embedded_common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;

use embedded_common::*;
use tom_gateway::ledger::embedded::{verify, EmbeddedLedger, EmbeddedOptions, ValidationCode};
use tom_gateway::ledger::Ledger;

const CHILD_ENV: &str = "TOM_CRASH_CHILD_DIR";
const TEST_NAME: &str = "a_killed_process_keeps_every_acknowledged_transaction";

/// In the child: submit RecordData forever, printing each acknowledgement once it is durable.
fn child(dir: &std::path::Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ledger = Arc::new(EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap());
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

#[test]
fn a_killed_process_keeps_every_acknowledged_transaction() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(std::path::Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut process = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
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

    let ledger = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap();
    for (tx_id, block) in &acknowledged {
        let status = ledger
            .transaction_status(tx_id)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged tx {tx_id} is lost"));
        assert_eq!((status.block, status.code), (*block, ValidationCode::Valid));
    }
    let height = ledger.height();
    assert!(height > acknowledged.iter().map(|(_, b)| *b).max().unwrap());
    ledger.shutdown();
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.blocks, height);
    assert!(report.transactions >= 302);
}
