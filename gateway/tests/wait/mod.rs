//! Waiting for a condition in tests, instead of sleeping for a guessed time: poll until the
//! condition holds, and fail naming what was awaited at a deadline. A test that sleeps is slow
//! when the guess is generous and flaky when it is not; one that polls is neither.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

/// How often the condition is checked again. Long enough not to hammer a Docker engine, short
/// enough that a test does not wait noticeably after the condition holds.
pub const POLL: Duration = Duration::from_millis(200);

/// Check `check` until it yields `Some` (returned) or `timeout` passes (`None`).
pub async fn poll<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`poll`], panicking with `what` if the condition does not hold within `timeout`.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll(timeout, check).await {
        Some(value) => value,
        None => panic!("{what}: not within {} s", timeout.as_secs_f32()),
    }
}

/// [`until`] for a plain condition.
pub async fn until_true<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    until(what, timeout, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await
}
