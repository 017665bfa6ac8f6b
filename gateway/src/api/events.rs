//! `GET /v1/events`: committed records as server-sent events.
//!
//! Each committed transaction's chaincode event becomes one SSE event: `event:` the record kind
//! (`PROV-DATA`, `ORCHESTRATE`, ...), `id:` the transaction id, `data:` the record's JSON. A
//! subscriber that falls too far behind gets a `lagged` event saying how many it missed (it can
//! catch up with `GET /v1/records`), instead of a silently incomplete stream. Streams end when
//! the server shuts down, so a graceful shutdown is never held open by a listener.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::extract::Caller;
use crate::app::AppState;

pub async fn events(
    State(s): State<AppState>,
    Caller(_): Caller,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = s.ledger.subscribe();
    let mut shutdown = s.shutdown_signal();
    let stopped = async move {
        // Err: the sender is gone, which also means the server is stopping.
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    let stream = BroadcastStream::new(receiver)
        .map(|item| {
            Ok(match item {
                Ok(event) => Event::default()
                    .event(event.name)
                    .id(event.tx_id)
                    .data(String::from_utf8_lossy(&event.payload)),
                Err(BroadcastStreamRecvError::Lagged(missed)) => Event::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{missed}}}")),
            })
        })
        .take_until(Box::pin(stopped));
    Sse::new(stream).keep_alive(KeepAlive::default())
}
