//! Waiting for a condition in tests, instead of sleeping for a guessed time: poll until the
//! condition holds and fail, naming what was awaited, at a deadline. A test that sleeps is slow
//! when the guess is generous and flaky when it is not; one that polls is neither.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

/// How often [`until`] looks again.
pub const POLL: Duration = Duration::from_millis(50);

/// Poll `check` until it yields `Some`, and return that; panic naming `what` (and the last
/// thing `check` saw, if it says) after `timeout`.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {timeout:?} for {what}; last seen: {last}"
        );
        tokio::time::sleep(POLL).await;
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
        async move {
            if holds.await {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        }
    })
    .await
}
