//! `GET /v1/events`: committed records as server-sent events.
//!
//! Each committed transaction's chaincode event becomes one SSE event: `event:` the record kind
//! (`PROV-DATA`, `ORCHESTRATE`, ...), `id:` the transaction id, `data:` the record's JSON. A
//! subscriber that falls too far behind gets a `lagged` event saying how many it missed (it can
//! catch up with `GET /v1/records`), instead of a silently incomplete stream. Streams end when
//! the server shuts down, so a graceful shutdown is never held open by a listener.
//!
//! Resuming: each event's `id:` is `<block>.<tx_id>` (the block that committed it and the
//! transaction). A client that reconnects with `Last-Event-ID: <id>` (browsers' `EventSource`
//! does so by itself) or `?after=<id>` first gets every committed event after that one, replayed
//! from the ledger (embedded: its block log; Fabric: a chaincode-event stream opened just after
//! that transaction), then the live ones. Ordering guarantee: events arrive in commit order
//! (block, then position in the block), each committed event exactly once per stream,
//! including across a resume: the live subscription is opened before the replay reads the log,
//! and live events of blocks the replay already covered are dropped (a block is committed and
//! broadcast as a whole, so a block the replay saw holds all of its events). With `kind`, the
//! filter applies to replayed events too. An id whose transaction committed no event in that
//! block (one from another ledger or channel, or of another block) is a 400 on every back end
//! ([`crate::ledger::no_committed_event`]), never a replay from a guessed position.
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
use super::state::AppState;

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
    /// Resume after this event id (`<block>.<tx_id>`); `Last-Event-ID` wins when both are sent.
    #[serde(default)]
    after: Option<String>,
}

/// An event id as `/v1/events` sends it.
pub fn event_id(block: u64, tx_id: &str) -> String {
    format!("{block}.{tx_id}")
}

/// `<block>.<tx_id>` → (block, tx_id), or a 400 naming the rule.
pub fn parse_event_id(id: &str) -> Result<(u64, String), AppError> {
    let bad = || {
        AppError::bad_request(format!(
            "event id {} is not <block>.<tx_id> (as sent in an event's id)",
            tom_contract::ids::shown(id)
        ))
    };
    let (block, tx_id) = id.split_once('.').ok_or_else(bad)?;
    let block = block.parse::<u64>().map_err(|_| bad())?;
    tom_contract::ids::TX_ID
        .check("tx_id", tx_id)
        .map_err(|_| bad())?;
    Ok((block, tx_id.to_owned()))
}

fn sse(event: &crate::ledger::CommittedEvent) -> Event {
    Event::default()
        .event(event.name.clone())
        .id(event_id(event.block, &event.tx_id))
        .data(String::from_utf8_lossy(&event.payload))
}

pub async fn events(
    State(s): State<AppState>,
    Caller(_): Caller,
    headers: axum::http::HeaderMap,
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
    let last_event_id = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| AppError::bad_request("Last-Event-ID is not text"))?
                .to_owned(),
        ),
        None => q.after.clone(),
    };
    let resume = last_event_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .map(parse_event_id)
        .transpose()?;
    // Subscribe before reading the log, so nothing committed in between is missed.
    let receiver = s.ledger.subscribe();
    let (replayed, covered) = match &resume {
        None => (Vec::new(), None),
        Some((block, tx_id)) => {
            let events = s.ledger.replay_after(*block, tx_id).await?;
            let last = events.last().map_or(*block, |e| e.block).max(*block);
            (events, Some(last))
        }
    };
    let wanted = {
        let kinds = kinds.clone();
        move |name: &str| kinds.as_ref().is_none_or(|k| k.iter().any(|k| k == name))
    };
    let replay: Vec<Result<Event, Infallible>> = replayed
        .iter()
        .filter(|e| wanted(&e.name))
        .map(|e| Ok(sse(e)))
        .collect();
    let mut shutdown = s.shutdown_signal();
    let stopped = async move {
        // Err: the sender is gone, which also means the server is stopping.
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    let live = BroadcastStream::new(receiver).filter_map(move |item| {
        let event = match item {
            Ok(event) if covered.is_some_and(|last| event.block <= last) => None,
            Ok(event) if kinds.as_ref().is_some_and(|k| !k.contains(&event.name)) => None,
            Ok(event) => Some(sse(&event)),
            Err(BroadcastStreamRecvError::Lagged(missed)) => Some(
                Event::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{missed}}}")),
            ),
        };
        std::future::ready(event.map(Ok))
    });
    let stream = futures::stream::iter(replay)
        .chain(live)
        .take_until(Box::pin(stopped));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
