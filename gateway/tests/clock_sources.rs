//! Time and randomness enter the ledgers through `tom_gateway::clock`: an injected clock stamps
//! proposals and blocks, an injected transaction-id source decides the ids, and a failing random
//! source is an error that reaches the caller (503 over HTTP, nothing recorded), never a zero
//! nonce.

mod embedded_common;

use std::sync::Arc;

use embedded_common::*;
use serde_json::{json, Value};
use tom_contract::Timestamp;
use tom_gateway::app::{self, AppState};
use tom_gateway::clock::{embedded_tx_id, CountingTxIds, FailingTxIds, ManualClock, SystemClock};
use tom_gateway::identities::IdentityStore;
use tom_gateway::ledger::embedded::{EmbeddedLedger, EmbeddedOptions};
use tom_gateway::ledger::memory::InMemoryLedger;
use tom_gateway::ledger::{Ledger, LedgerError};

/// 2030-03-17, inside every fixture certificate's validity and far from the test's real time.
const AT: i64 = 1_900_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_ledger_takes_time_and_ids_from_its_sources() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_seconds(AT)));
    let options = EmbeddedOptions {
        clock: clock.clone(),
        tx_ids: Arc::new(CountingTxIds::default()),
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(dir.path(), options).unwrap();
    assert_eq!(
        ledger.block(0).unwrap().unwrap().header.timestamp,
        Timestamp::from_seconds(AT),
        "genesis is stamped by the injected clock"
    );

    clock.advance(std::time::Duration::from_secs(7));
    let org = register_org1(&ledger).await;
    // The first id the counting source gives, derived as the embedded ledger derives it.
    let (expected, _) = embedded_tx_id(
        &CountingTxIds::default(),
        &signer("org1", "admin").creator(),
    )
    .unwrap();
    assert_eq!(org.tx_id, expected);
    let block = ledger.block(org.block).unwrap().unwrap();
    assert_eq!(block.header.timestamp, Timestamp::from_seconds(AT + 7));
    assert_eq!(
        block.transactions[0].proposal.timestamp,
        Timestamp::from_seconds(AT + 7)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_random_source_fails_the_call_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        tx_ids: Arc::new(FailingTxIds),
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(dir.path(), options).unwrap();
    let org = tom_fixtures::org("org1");
    let arg = json!({ "msp_id": org.msp_id, "ca_certificates": [org.ca_cert_pem] });
    let err = ledger
        .submit(&signer("org1", "admin"), "RegisterOrg", &bytes(&arg))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LedgerError::Unavailable(m) if m.contains("random source failed")),
        "{err:?}"
    );
    let err = ledger
        .evaluate(&signer("org1", "admin"), "GetMetadata", b"{}")
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Unavailable(_)), "{err:?}");
    assert_eq!(ledger.height(), 1, "nothing but genesis was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_a_failing_random_source_is_a_503_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = IdentityStore::open(dir.path()).unwrap();
    let admin = tom_fixtures::identity("org1", "admin");
    store
        .add("admin", admin.msp_id, admin.cert_pem, admin.key_pkcs8_pem)
        .unwrap();
    store.add_token("admin", "tom_test-admin-token").unwrap();
    let ledger = Arc::new(InMemoryLedger::with_sources(
        Arc::new(SystemClock),
        Arc::new(FailingTxIds),
    ));
    let running = app::spawn("127.0.0.1:0", AppState::new(ledger, store))
        .await
        .unwrap();
    let org = tom_fixtures::org("org1");
    let reply = reqwest::Client::new()
        .post(format!("{}/v1/orgs", running.url()))
        .bearer_auth("tom_test-admin-token")
        .json(&json!({ "msp_id": org.msp_id, "ca_certificates": [org.ca_cert_pem] }))
        .send()
        .await
        .unwrap();
    let status = reply.status();
    let body: Value = reply.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("random source failed")),
        "{body}"
    );
    running.stop().await.unwrap();
}
