//! A 409 says whether retrying can help: an MVCC conflict (a concurrent transaction changed what
//! this one read) is `mvcc_conflict`, retryable, with `Retry-After`; a guard refusal is
//! `guard_failed` (or `already_exists`), never retryable. Both produced for real on the embedded
//! ledger and answered through the REST error mapping.

mod embedded_common;

use axum::response::IntoResponse;
use embedded_common::*;
use serde_json::{json, Value};
use tom_gateway::api::error::AppError;
use tom_gateway::ledger::embedded::{EmbeddedLedger, EmbeddedOptions};
use tom_gateway::ledger::{Ledger, LedgerError};

async fn answer(error: LedgerError) -> (u16, Option<String>, Value) {
    let response = AppError::from(error).into_response();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, retry_after, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mvcc_conflict_and_a_guard_refusal_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap();
    register_org1(&ledger).await;
    identify(&ledger, "tl-1", "traffic-light-1").await;

    // Two leaves of the same device endorsed on the same state: the first commits, the second
    // read a version that is gone by then -> invalidated at commit (MVCC).
    let orchestrator = signer("org1", "orchestrator");
    let leave = bytes(&json!({ "id": "tl-1", "reason": "decommissioned" }));
    let first = ledger
        .endorse(&orchestrator, "TerminateDevice", &leave)
        .await
        .unwrap();
    let second = ledger
        .endorse(&orchestrator, "TerminateDevice", &leave)
        .await
        .unwrap();
    ledger.commit(first).await.unwrap();
    let conflict = ledger.commit(second).await.unwrap_err();
    assert!(
        matches!(conflict, LedgerError::Conflict { .. }),
        "{conflict:?}"
    );
    let (status, retry_after, body) = answer(conflict).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "mvcc_conflict", "{body}");
    assert_eq!(body["retryable"], true, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));

    // The same leave submitted now is refused by the guards (the device has left): retrying
    // never helps.
    let refused = ledger
        .submit(&orchestrator, "TerminateDevice", &leave)
        .await
        .unwrap_err();
    let (status, retry_after, body) = answer(refused).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "guard_failed", "{body}");
    assert_eq!(body["retryable"], false, "{body}");
    assert_eq!(retry_after, None);

    ledger.shutdown();
}

#[tokio::test]
async fn error_bodies_carry_a_code_for_every_status() {
    let (status, retry_after, body) = answer(LedgerError::Unavailable(
        "ledger storage full: no space left on device; nothing was recorded".into(),
    ))
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "ledger_unavailable");
    assert_eq!(body["retryable"], true);
    assert!(retry_after.is_some());
    let (status, _, body) = answer(LedgerError::Rejected {
        status: 409,
        message: "device tl-1 already exists (joined)".into(),
    })
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "already_exists");
    assert_eq!(body["retryable"], false);
    let (status, _, body) = answer(LedgerError::Internal("bug".into())).await;
    assert_eq!(status, 500);
    assert_eq!(body["code"], "internal");
    assert_eq!(
        body["error"],
        "internal error (the gateway log has the details)"
    );
}
