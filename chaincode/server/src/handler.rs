//! One peer's stream: the registration handshake, then many transactions at once.
//!
//! The chaincode speaks first: REGISTER (with the package id), the peer answers REGISTERED and
//! then READY. From then on the peer sends TRANSACTION (or INIT) messages, each naming its
//! channel and transaction id, and may send the next before the previous one completed. Every
//! transaction runs on its own blocking thread (the contract is synchronous); its requests to
//! the peer go out on the shared outbound channel and the peer's RESPONSE/ERROR messages are
//! routed back by `(channel, txid)`, the key Fabric's own shim uses. KEEPALIVE is echoed in any
//! state.
//!
//! On shutdown the stream stops taking transactions, lets the in-flight ones finish within the
//! grace period, and then ends the stream with UNAVAILABLE so that the peer reconnects to
//! whichever chaincode instance takes over.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fabric_shim_protos::peer::chaincode_message::Type;
use fabric_shim_protos::peer::{ChaincodeId, ChaincodeInput, ChaincodeMessage, Response};
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::{Status, Streaming};
use tracing::{debug, info, warn};

use crate::peer_stub::{type_name, Outbound, PeerLink, PeerStub};
use crate::proposal;

/// How long one stub request waits for the peer (see [`PeerLink::timeout`]).
pub(crate) const PEER_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `(channel id, transaction id)`: transactions on different channels may share an id.
type TxKey = (String, String);

/// Where the peer's answers for each in-flight transaction go.
///
/// A std mutex: every critical section is a map lookup or insert, never an `.await`, and the
/// blocking transaction threads never touch it.
#[derive(Default, Clone)]
struct Routes(Arc<Mutex<HashMap<TxKey, std_mpsc::Sender<ChaincodeMessage>>>>);

impl Routes {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<TxKey, std_mpsc::Sender<ChaincodeMessage>>> {
        // A panic while holding this lock cannot leave the map half-updated (single inserts and
        // removes), so a poisoned lock is still usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How long a peer may leave REGISTER unanswered before the chaincode warns about it.
const REGISTER_WARNING_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// REGISTER sent, waiting for REGISTERED.
    Created,
    /// Waiting for READY.
    Established,
    Ready,
}

/// Everything a stream needs from the server.
#[derive(Clone)]
pub(crate) struct StreamSettings {
    pub(crate) chaincode_id: Arc<str>,
    pub(crate) shutdown_grace: Duration,
    pub(crate) request_timeout: Duration,
}

/// Serve one peer stream until the peer leaves, the protocol breaks, or the server stops.
pub(crate) async fn serve_stream(
    settings: StreamSettings,
    mut inbound: Streaming<ChaincodeMessage>,
    outbound: Outbound,
    mut stop: watch::Receiver<bool>,
    remote: Option<SocketAddr>,
) {
    let peer = remote
        .map(|a| a.to_string())
        .unwrap_or_else(|| "unknown peer".into());
    let register = ChaincodeMessage {
        r#type: Type::Register as i32,
        payload: ChaincodeId {
            name: settings.chaincode_id.to_string(),
            ..Default::default()
        }
        .encode_to_vec(),
        ..Default::default()
    };
    if outbound.send(Ok(register)).await.is_err() {
        return;
    }
    info!(%peer, "peer connected; sent REGISTER");

    let routes = Routes::default();
    let mut transactions: JoinSet<()> = JoinSet::new();
    let mut state = State::Created;
    let mut draining: Option<tokio::time::Instant> = None;
    // A peer that does not know the package id never answers REGISTER (it neither refuses nor
    // closes the stream), so the operator would see nothing but a timeout on the client side.
    let register_deadline = tokio::time::Instant::now() + REGISTER_WARNING_AFTER;
    let mut register_warned = false;

    let end: Result<(), Status> = loop {
        let deadline =
            draining.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            received = inbound.message() => {
                let message = match received {
                    Ok(Some(message)) => message,
                    Ok(None) => { info!(%peer, "peer closed the stream"); break Ok(()) }
                    Err(status) => { info!(%peer, code = ?status.code(), "peer stream ended (peer restarted or went away)"); debug!(%peer, %status, "peer stream error detail"); break Ok(()) }
                };
                match handle(&settings, &mut state, message, &outbound, &routes, &mut transactions, draining.is_some()).await {
                    Ok(()) => {}
                    Err(violation) => {
                        warn!(%peer, %violation, "protocol violation; closing the stream");
                        break Err(Status::failed_precondition(violation));
                    }
                }
            }
            // An error here means the server is gone without saying stop: stop all the same.
            () = stopped(&mut stop), if draining.is_none() => {
                info!(%peer, in_flight = transactions.len(), "shutting down: no new transactions");
                draining = Some(tokio::time::Instant::now() + settings.shutdown_grace);
                if transactions.is_empty() {
                    break Err(Status::unavailable("chaincode is shutting down"));
                }
            }
            Some(_) = transactions.join_next(), if !transactions.is_empty() => {
                if draining.is_some() && transactions.is_empty() {
                    break Err(Status::unavailable("chaincode is shutting down"));
                }
            }
            _ = tokio::time::sleep_until(register_deadline), if state == State::Created && !register_warned => {
                register_warned = true;
                warn!(
                    %peer,
                    chaincode_id = %settings.chaincode_id,
                    "the peer has not acknowledged REGISTER after {}s; is CHAINCODE_ID the package id installed on it (peer lifecycle chaincode queryinstalled)?",
                    REGISTER_WARNING_AFTER.as_secs()
                );
            }
            _ = tokio::time::sleep_until(deadline), if draining.is_some() => {
                warn!(%peer, in_flight = transactions.len(), "shutdown grace expired; abandoning in-flight transactions");
                break Err(Status::unavailable("chaincode is shutting down"));
            }
        }
    };

    // Dropping the routes wakes every transaction thread still waiting for this peer: its stub
    // call fails with "stream closed" and the thread ends.
    routes.lock().clear();
    transactions.abort_all();
    if let Err(status) = end {
        let _ = outbound.send(Err(status)).await;
    }
}

/// Resolves when the server says stop (or is gone). The watch guard is dropped inside, so the
/// stream's future stays `Send`.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// React to one message from the peer. An `Err` is a protocol violation that ends the stream.
async fn handle(
    settings: &StreamSettings,
    state: &mut State,
    message: ChaincodeMessage,
    outbound: &Outbound,
    routes: &Routes,
    transactions: &mut JoinSet<()>,
    draining: bool,
) -> Result<(), String> {
    let kind = Type::try_from(message.r#type).ok();
    if kind == Some(Type::Keepalive) {
        let _ = outbound.send(Ok(message)).await;
        return Ok(());
    }
    match (*state, kind) {
        (State::Created, Some(Type::Registered)) => {
            *state = State::Established;
            Ok(())
        }
        (State::Established, Some(Type::Ready)) => {
            // A Fabric 3 peer may offer write batching in READY's payload; TOM sends every
            // write on its own, which every peer version accepts.
            *state = State::Ready;
            debug!("stream ready");
            Ok(())
        }
        (State::Ready, Some(Type::Transaction | Type::Init)) => {
            if draining {
                let _ = outbound
                    .send(Ok(error_reply(&message, "chaincode is shutting down")))
                    .await;
            } else {
                start_transaction(settings, message, outbound, routes, transactions).await;
            }
            Ok(())
        }
        (State::Ready, Some(Type::Response | Type::Error)) => {
            let key = (message.channel_id.clone(), message.txid.clone());
            let route = routes.lock().get(&key).cloned();
            let routed = route.is_some_and(|route| route.send(message).is_ok());
            if !routed {
                // A late answer for a transaction that already failed (e.g. timed out):
                // nothing waits for it any more.
                warn!(channel = %key.0, txid = %key.1, "peer answered a transaction that is not in flight; ignored");
            }
            Ok(())
        }
        (State::Ready, _) => {
            let text = format!("cannot handle {} from the peer", type_name(message.r#type));
            warn!(txid = %message.txid, "{text}");
            let _ = outbound.send(Ok(error_reply(&message, &text))).await;
            Ok(())
        }
        (state, _) => {
            let expected = if state == State::Created {
                "REGISTERED"
            } else {
                "READY"
            };
            let text = format!(
                "received {} while waiting for {expected} (the handshake is REGISTER, REGISTERED, READY)",
                type_name(message.r#type)
            );
            let _ = outbound.send(Ok(error_reply(&message, &text))).await;
            Err(text)
        }
    }
}

async fn start_transaction(
    settings: &StreamSettings,
    message: ChaincodeMessage,
    outbound: &Outbound,
    routes: &Routes,
    transactions: &mut JoinSet<()>,
) {
    let key = (message.channel_id.clone(), message.txid.clone());
    let (answers, responses) = std_mpsc::channel();
    let duplicate = {
        let mut map = routes.lock();
        match map.entry(key.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => true,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(answers);
                false
            }
        }
    };
    if duplicate {
        let text = format!(
            "transaction {} on channel {:?} is already in flight",
            key.1, key.0
        );
        let _ = outbound.send(Ok(error_reply(&message, &text))).await;
        return;
    }
    let link = PeerLink {
        channel_id: message.channel_id.clone(),
        tx_id: message.txid.clone(),
        outbound: outbound.clone(),
        responses,
        timeout: settings.request_timeout,
    };
    let outbound = outbound.clone();
    let routes = routes.clone();
    // One task per transaction so that the stream keeps reading (and routing answers to other
    // transactions) while this one runs; the contract itself runs on a blocking thread.
    transactions.spawn(async move {
        let header = message.clone();
        let reply = match tokio::task::spawn_blocking(move || execute(message, link)).await {
            Ok(reply) => reply,
            Err(join) => error_reply(
                &header,
                &format!("transaction failed inside the chaincode: {join}"),
            ),
        };
        routes.lock().remove(&key);
        let _ = outbound.send(Ok(reply)).await;
    });
}

/// Run one transaction to its COMPLETED (or ERROR) message. Runs on a blocking thread.
fn execute(message: ChaincodeMessage, link: PeerLink) -> ChaincodeMessage {
    let input = match ChaincodeInput::decode(message.payload.as_slice()) {
        Ok(input) => input,
        Err(e) => {
            return error_reply(
                &message,
                &format!("transaction payload is not a ChaincodeInput: {e}"),
            )
        }
    };
    let Some(signed) = message.proposal.as_ref() else {
        return error_reply(
            &message,
            "transaction carries no signed proposal (the creator is unknown)",
        );
    };
    let context = match proposal::decode(signed) {
        Ok(context) => context,
        Err(e) => return error_reply(&message, &e),
    };

    let (status, text, payload, event) = match input.args.split_first() {
        None => (
            400,
            "no function name: the transaction's argument list is empty".to_owned(),
            Vec::new(),
            None,
        ),
        Some((function, args)) => match std::str::from_utf8(function) {
            Err(_) => (
                400,
                "the function name is not UTF-8".to_owned(),
                Vec::new(),
                None,
            ),
            Ok(function) => {
                let mut stub = PeerStub::new(link, context);
                let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                match tom_contract::invoke(&mut stub, function, &args) {
                    Ok(payload) => (200, String::new(), payload, stub.take_event()),
                    Err(error) => {
                        debug!(txid = %message.txid, function, %error, "transaction refused");
                        (
                            i32::from(error.status()),
                            error.to_string(),
                            Vec::new(),
                            None,
                        )
                    }
                }
            }
        },
    };
    // Fabric's shims report a refused transaction as COMPLETED with a status >= 400; the peer
    // then returns the status and message to the client and does not endorse.
    let response = Response {
        status,
        message: text,
        payload,
    };
    ChaincodeMessage {
        r#type: Type::Completed as i32,
        payload: response.encode_to_vec(),
        txid: message.txid,
        channel_id: message.channel_id,
        chaincode_event: event,
        ..Default::default()
    }
}

/// An ERROR message answering `to`, carrying the reason as its payload (as Fabric's shims do).
fn error_reply(to: &ChaincodeMessage, text: &str) -> ChaincodeMessage {
    ChaincodeMessage {
        r#type: Type::Error as i32,
        payload: text.as_bytes().to_vec(),
        txid: to.txid.clone(),
        channel_id: to.channel_id.clone(),
        ..Default::default()
    }
}
