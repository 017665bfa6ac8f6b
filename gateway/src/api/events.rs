//! `GET /v1/events`: committed records as server-sent events.
//!
//! Each committed transaction's chaincode event becomes one SSE event: `event:` the record kind
//! (`PROV-DATA`, `ORCHESTRATE`, ...), `id:` the transaction id, `data:` the record's JSON. A
//! subscriber that falls too far behind gets a `lagged` event saying how many it missed (it can
//! catch up with `GET /v1/records`), instead of a silently incomplete stream. Streams end when
//! the server shuts down, so a graceful shutdown is never held open by a listener.
//!
//! `?kind=PROV-DATA,ORCHESTRATE` keeps only those record kinds (an unknown kind is a 400, so a
//! typo never yields a silently empty stream).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::error::AppError;
use super::extract::{ApiQuery, Caller};
use crate::app::AppState;

/// Every record kind, as the contract names its chaincode events.
pub(crate) const KINDS: &[&str] = &[
    "ORG",
    "PROV-ID-create",
    "PROV-ID-delete",
    "ORCHESTRATE",
    "CONTRACT",
    "PROV-DATA",
    "PROV-ORCH",
    "OUTCOME",
    "DRIFT",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Comma-separated record kinds; all kinds when absent.
    #[serde(default)]
    kind: Option<String>,
}

pub async fn events(
    State(s): State<AppState>,
    Caller(_): Caller,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let kinds: Option<Vec<String>> = match &q.kind {
        None => None,
        Some(list) => {
            let kinds: Vec<String> = list.split(',').map(|k| k.trim().to_owned()).collect();
            if let Some(bad) = kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
                return Err(AppError::bad_request(format!(
                    "kind {bad:?} is not a record kind (one of {})",
                    KINDS.join(", ")
                )));
            }
            Some(kinds)
        }
    };
    let receiver = s.ledger.subscribe();
    let mut shutdown = s.shutdown_signal();
    let stopped = async move {
        // Err: the sender is gone, which also means the server is stopping.
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    let stream = BroadcastStream::new(receiver)
        .filter_map(move |item| {
            let event = match item {
                Ok(event) if kinds.as_ref().is_some_and(|k| !k.contains(&event.name)) => None,
                Ok(event) => Some(
                    Event::default()
                        .event(event.name)
                        .id(event.tx_id)
                        .data(String::from_utf8_lossy(&event.payload)),
                ),
                Err(BroadcastStreamRecvError::Lagged(missed)) => Some(
                    Event::default()
                        .event("lagged")
                        .data(format!("{{\"missed\":{missed}}}")),
                ),
            };
            std::future::ready(event.map(Ok))
        })
        .take_until(Box::pin(stopped));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
