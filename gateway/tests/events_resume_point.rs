//! Issue 11, resumable events: a resume point `<block>.<tx_id>` whose transaction committed no
//! event in that block is refused with a 400 that says so, on the embedded and in-memory
//! ledgers (Fabric: `fabric_client.rs` and `scripts/test-fabric.sh`), and one that does resumes
//! just after it.

mod embedded_common;

use std::sync::Arc;

use embedded_common::*;
use tom_gateway::ledger::embedded::{EmbeddedLedger, EmbeddedOptions};
use tom_gateway::ledger::memory::InMemoryLedger;
use tom_gateway::ledger::{no_committed_event, Ledger, LedgerError};

#[track_caller]
fn refused(
    result: Result<Vec<tom_gateway::ledger::CommittedEvent>, LedgerError>,
    block: u64,
    tx_id: &str,
) {
    match result {
        Err(LedgerError::Rejected { status, message }) => {
            assert_eq!(status, 400, "{message}");
            let LedgerError::Rejected { message: want, .. } = no_committed_event(block, tx_id)
            else {
                unreachable!()
            };
            assert_eq!(message, want);
            assert!(
                message.contains(&format!(
                    "block {block} has no event of transaction {tx_id}"
                )),
                "{message}"
            );
        }
        other => panic!("resuming at {block}.{tx_id} was not refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resume_point_with_a_transaction_of_another_block_is_a_400() {
    let dir = tempfile::tempdir().unwrap();
    let ledgers: [(&str, Arc<dyn Ledger>); 2] = [
        (
            "embedded",
            Arc::new(EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap()),
        ),
        ("in-memory", Arc::new(InMemoryLedger::new())),
    ];
    for (name, ledger) in ledgers {
        let org = register_org1(ledger.as_ref()).await;
        let first = identify(ledger.as_ref(), "d-1", "traffic-light-1").await;
        let second = identify(ledger.as_ref(), "d-2", "roadside-gateway-1").await;
        assert!(
            org.block < first.block && first.block < second.block,
            "{name}: one block per transaction"
        );
        // The resume point as sent: the next events follow.
        let replayed = ledger.replay_after(org.block, &org.tx_id).await.unwrap();
        let ids: Vec<(u64, String)> = replayed
            .iter()
            .map(|e| (e.block, e.tx_id.clone()))
            .collect();
        assert_eq!(
            ids,
            [
                (first.block, first.tx_id.clone()),
                (second.block, second.tx_id.clone())
            ],
            "{name}"
        );
        // A committed transaction, but of another block: refused, not replayed from elsewhere.
        refused(
            ledger.replay_after(first.block, &org.tx_id).await,
            first.block,
            &org.tx_id,
        );
        refused(
            ledger.replay_after(org.block, &second.tx_id).await,
            org.block,
            &second.tx_id,
        );
        // A transaction id this ledger never saw.
        let foreign = "ab".repeat(32);
        refused(
            ledger.replay_after(first.block, &foreign).await,
            first.block,
            &foreign,
        );
    }
}
