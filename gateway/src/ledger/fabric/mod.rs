//! The Fabric back end: a client of a peer's Fabric Gateway gRPC service behind [`Ledger`].
//!
//! A submit is Fabric's full transaction flow, done by hand over the Gateway API so that the
//! gateway depends on nothing but the protocol: build a proposal and sign it as the caller
//! (`Endorse`: the peer collects every organisation's endorsement the policy needs), sign the
//! prepared transaction envelope (`Submit`: the peer hands it to the ordering service), then
//! wait for the block that carries it (`CommitStatus`) and report anything but `VALID` as a
//! [`LedgerError::Conflict`]. Queries are one signed proposal (`Evaluate`). A background task
//! keeps a `ChaincodeEvents` stream open and feeds [`Ledger::subscribe`].
//!
//! Failover: the profile may name several peers of the organisation. Every call goes to the
//! peer that answered last and, when that one is unreachable (an answer another peer might not
//! give: [`LedgerError::Unavailable`]), to the next; evaluate, endorse, submit (the same signed
//! envelope: a transaction id commits at most once) and commit status alike. The event stream
//! moves to the next peer when its stream breaks and resumes just after the last event it
//! forwarded. A probe task evaluates the chaincode's `GetMetadata` on every peer every few
//! seconds for [`Ledger::readiness`]. `/metrics` counts calls per peer and result
//! ([`Ledger::metrics`]).
//!
//! Failures are classified by what the caller can do ([`errors::from_status`]); once a
//! transaction may have reached the ordering service, a failure to see its commit is
//! [`LedgerError::OutcomeUnknown`] with its id, never "nothing recorded".
//!
//! The protobuf messages and the gRPC service stubs are the real Fabric definitions, generated
//! for tonic 0.14 by the `fabric-sdk` crate (used for its `fabric` proto modules only; see
//! [`protos`]; that crate's build script runs `protoc`, which `scripts/setup/10-protoc.sh`
//! installs). This module keeps no private key but the default identity's, never
//! retries a submit on its own (a retried submit is a new transaction) and never blocks a
//! caller on the event stream.

pub mod errors;
mod evidence;
pub mod profile;
pub mod proposal;
mod replay;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::broadcast;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub use profile::{ConnectionProfile, PeerConfig, PeerEntry, PeerSettings, Scheme, Timeouts};

use self::errors::{error_chain, from_status, submit_not_sent, validation_code_name};
use self::proposal::EventsFrom;
use self::protos::gateway::gateway_client::GatewayClient;
use self::protos::{gateway, peer};
use super::{CommittedEvent, Ledger, LedgerError, Readiness, SigningIdentity, Submitted};
use crate::clock::{self, Clock, TxIdSource};

/// The Fabric protobuf packages this back end speaks, re-exported so that tests and tools use
/// exactly the same definitions.
pub mod protos {
    pub use fabric_sdk::fabric::google_protobuf::Timestamp;
    pub use fabric_sdk::fabric::{common, gateway, kvrwset, msp, orderer, protos as peer, rwset};
}

/// How long the event task waits before reopening a broken stream: doubling from the first
/// value up to the second (the first value only until every peer was tried once).
const EVENT_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(10));

/// Between readiness probes of the peers.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// The longest a readiness probe waits for one peer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The chaincode function the readiness probe evaluates: every Fabric contract answers it, and
/// it reads no state.
const PROBE_FUNCTION: &str = "org.hyperledger.fabric:GetMetadata";

/// Between HTTP/2 pings: above the 60 s minimum a Fabric peer enforces.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(90);

/// The largest gRPC message accepted or sent: Fabric's own default (100 MiB), not tonic's 4 MiB,
/// so that large query results (a PROV export) come through as they do from the peer CLI.
const MAX_MESSAGE_SIZE: usize = 100 * 1024 * 1024;

/// One peer of the profile.
struct Peer {
    /// `host:port`: how logs and metrics name it.
    label: String,
    endpoint: String,
    client: GatewayClient<Channel>,
}

/// Counters and state behind `/metrics` and `/readyz`.
#[derive(Default)]
struct Stats {
    /// (peer, call, result) → count.
    calls: BTreeMap<(usize, &'static str, &'static str), u64>,
    /// call → answers from another peer than the one asked first.
    failovers: BTreeMap<&'static str, u64>,
    /// The peer whose chaincode event stream is open.
    event_peer: Option<usize>,
    /// Per peer: the last readiness probe's verdict.
    peer_up: Vec<Option<bool>>,
}

/// What the ledger's tasks and calls share.
struct Shared {
    peers: Vec<Peer>,
    /// Proposal timestamps.
    clock: Arc<dyn Clock>,
    /// Proposal nonces (and so transaction ids).
    tx_ids: Arc<dyn TxIdSource>,
    /// The peer asked first: the one that answered last.
    preferred: AtomicUsize,
    stats: Mutex<Stats>,
    readiness: Mutex<Readiness>,
}

/// A failed attempt on one peer.
#[derive(Debug)]
enum Failure {
    Status(tonic::Status),
    Timeout(Duration),
}

impl Failure {
    fn error(&self, what: &str) -> LedgerError {
        match self {
            Failure::Status(status) => from_status(what, status),
            Failure::Timeout(timeout) => LedgerError::Unavailable(format!(
                "{what}: no answer from the peer within {timeout:?}"
            )),
        }
    }
}

/// A call that failed on every peer it was tried on.
struct Failed {
    /// The classified error (the last peer's, with the others' reasons when several failed).
    error: LedgerError,
    failures: Vec<Failure>,
}

fn result_label(result: &Result<(), &LedgerError>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(LedgerError::Rejected { .. } | LedgerError::Conflict { .. }) => "refused",
        Err(LedgerError::Unavailable(_) | LedgerError::OutcomeUnknown { .. }) => "unavailable",
        Err(LedgerError::Internal(_)) => "error",
    }
}

impl Shared {
    fn lock_stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, peer: usize, call: &'static str, result: &Result<(), &LedgerError>) {
        *self
            .lock_stats()
            .calls
            .entry((peer, call, result_label(result)))
            .or_default() += 1;
    }

    /// Peer indexes, the preferred one first.
    fn order(&self) -> impl Iterator<Item = usize> + '_ {
        let n = self.peers.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        (0..n).map(move |i| (first + i) % n)
    }

    /// Runs `call` (`name`: `evaluate`, `endorse` …, for metrics) on the peers, the preferred
    /// one first, moving to the next while the answer is one another peer might not give
    /// ([`LedgerError::Unavailable`]). Each attempt has `timeout`.
    async fn on_peers<T, F, Fut>(
        &self,
        name: &'static str,
        what: &str,
        timeout: Duration,
        mut call: F,
    ) -> Result<(T, usize), Failed>
    where
        F: FnMut(GatewayClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut failures = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        let order: Vec<usize> = self.order().collect();
        for (attempt, &index) in order.iter().enumerate() {
            let peer = &self.peers[index];
            let what = format!("{what} via {}", peer.endpoint);
            let failure = match tokio::time::timeout(timeout, call(peer.client.clone())).await {
                Ok(Ok(response)) => {
                    self.record(index, name, &Ok(()));
                    tracing::debug!(peer = %peer.label, call = name, "Fabric peer answered");
                    if attempt > 0 {
                        *self.lock_stats().failovers.entry(name).or_default() += 1;
                        let before = self.preferred.swap(index, Ordering::Relaxed);
                        if before != index {
                            tracing::info!(peer = %peer.label, call = name, instead_of = %self.peers[before % self.peers.len()].label, "failed over: Fabric calls now go to this peer");
                        }
                    }
                    return Ok((response.into_inner(), index));
                }
                Ok(Err(status)) => Failure::Status(status),
                Err(_) => Failure::Timeout(timeout),
            };
            let error = failure.error(&what);
            self.record(index, name, &Err(&error));
            failures.push(failure);
            match error {
                LedgerError::Unavailable(reason) if attempt + 1 < order.len() => {
                    tracing::warn!(peer = %peer.label, call = name, %reason, "Fabric peer unavailable; trying the next peer");
                    reasons.push(reason);
                }
                LedgerError::Unavailable(reason) if !reasons.is_empty() => {
                    reasons.push(reason);
                    return Err(Failed {
                        error: LedgerError::Unavailable(reasons.join("; then ")),
                        failures,
                    });
                }
                error => return Err(Failed { error, failures }),
            }
        }
        unreachable!("a profile has at least one peer")
    }
}

/// A Fabric network reached through the Gateway service of one organisation's peers.
pub struct FabricLedger {
    shared: Arc<Shared>,
    channel: String,
    chaincode: String,
    timeouts: Timeouts,
    default_identity: SigningIdentity,
    events: broadcast::Sender<CommittedEvent>,
    // The event and probe tasks live as long as the ledger (aborted on drop).
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for FabricLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FabricLedger")
            .field("description", &self.describe())
            .finish_non_exhaustive()
    }
}

impl Drop for FabricLedger {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FabricLedger {
    /// Connects to the profile's peers (TLS with the profile's CA unless an endpoint is
    /// `http://`) and starts the chaincode-event and readiness tasks. Fails with
    /// [`LedgerError::Unavailable`] when no peer can be reached or their TLS certificates are
    /// not trusted, and with [`LedgerError::Internal`] for a bad profile. Peers unreachable at
    /// start are connected to when first needed.
    pub async fn connect(profile: &ConnectionProfile) -> Result<FabricLedger, LedgerError> {
        Self::connect_with(profile, clock::system_clock(), clock::system_tx_ids()).await
    }

    /// [`FabricLedger::connect`], with proposal timestamps from `clock` and nonces from `tx_ids`.
    pub async fn connect_with(
        profile: &ConnectionProfile,
        clock: Arc<dyn Clock>,
        tx_ids: Arc<dyn TxIdSource>,
    ) -> Result<FabricLedger, LedgerError> {
        profile.validate().map_err(|(field, message)| {
            LedgerError::Internal(format!("connection profile field {field}: {message}"))
        })?;
        let default_identity = profile.identity()?;
        let mut peers = Vec::new();
        let mut unreachable = Vec::new();
        for config in profile.peer_configs() {
            let endpoint = endpoint(profile, &config)?;
            let connection = match endpoint.connect().await {
                Ok(connection) => connection,
                Err(e) => {
                    let reason = format!(
                        "cannot connect to the Fabric peer at {}: {}",
                        config.endpoint,
                        error_chain(&e)
                    );
                    tracing::warn!(peer = %config.label(), %reason, "Fabric peer unreachable at start");
                    unreachable.push(reason);
                    endpoint.connect_lazy()
                }
            };
            peers.push(Peer {
                label: config.label(),
                endpoint: config.endpoint.clone(),
                client: GatewayClient::new(connection)
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE),
            });
        }
        if unreachable.len() == peers.len() {
            return Err(LedgerError::Unavailable(unreachable.join("; ")));
        }
        let preferred = profile
            .peer_configs()
            .iter()
            .position(|c| {
                !unreachable
                    .iter()
                    .any(|r| r.contains(&format!("at {}:", c.endpoint)))
            })
            .unwrap_or(0);
        let shared = Arc::new(Shared {
            stats: Mutex::new(Stats {
                peer_up: vec![None; peers.len()],
                ..Stats::default()
            }),
            peers,
            clock,
            tx_ids,
            preferred: AtomicUsize::new(preferred),
            readiness: Mutex::new(Readiness::not_ready("checking the Fabric peers")),
        });
        let events = broadcast::channel(1024).0;
        let tasks = vec![
            tokio::spawn(run_event_stream(
                shared.clone(),
                default_identity.clone(),
                profile.channel.clone(),
                profile.chaincode.clone(),
                events.clone(),
            )),
            tokio::spawn(run_probe(
                shared.clone(),
                default_identity.clone(),
                profile.channel.clone(),
                profile.chaincode.clone(),
                profile.timeouts.evaluate().min(PROBE_TIMEOUT),
            )),
        ];
        Ok(FabricLedger {
            shared,
            channel: profile.channel.clone(),
            chaincode: profile.chaincode.clone(),
            timeouts: profile.timeouts,
            default_identity,
            events,
            tasks,
        })
    }

    /// The profile's identity, for callers that act as the gateway itself.
    pub fn default_identity(&self) -> &SigningIdentity {
        &self.default_identity
    }

    /// Endorse `proposed` on the peers, the preferred one first: the prepared (not yet signed)
    /// envelope and the index of the peer that endorsed. `what` names the call in logs.
    async fn endorse(
        &self,
        proposed: proposal::SignedProposal,
        what: &str,
    ) -> Result<(protos::common::Envelope, usize), LedgerError> {
        let endorse = gateway::EndorseRequest {
            transaction_id: proposed.tx_id,
            channel_id: self.channel.clone(),
            proposed_transaction: Some(proposed.proposal),
            endorsing_organizations: Vec::new(),
        };
        let timeout = self.timeouts.endorse();
        let (endorsed, endorser) = self
            .shared
            .on_peers("endorse", what, timeout, |mut c| {
                let r = request(endorse.clone(), timeout);
                async move { c.endorse(r).await }
            })
            .await
            .map_err(|f| f.error)?;
        let envelope = endorsed.prepared_transaction.ok_or_else(|| {
            LedgerError::Internal(format!("{what}: the peer returned no prepared transaction"))
        })?;
        Ok((envelope, endorser))
    }

    fn proposal(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<proposal::SignedProposal, LedgerError> {
        Ok(proposal::signed_proposal(
            identity,
            &self.channel,
            &self.chaincode,
            function,
            argument,
            &self.nonce()?,
            self.timestamp(),
        ))
    }

    /// A fresh proposal nonce from the ledger's [`TxIdSource`].
    fn nonce(&self) -> Result<clock::Nonce, LedgerError> {
        proposal::new_nonce(self.shared.tx_ids.as_ref())
    }

    /// Now, from the ledger's [`Clock`], for a proposal's channel header.
    fn timestamp(&self) -> protos::Timestamp {
        proposal::timestamp(self.shared.clock.as_ref())
    }

    /// Waits for the commit of `tx_id` (submitted), on any peer, until the commit-status
    /// deadline. Every failure is [`LedgerError::OutcomeUnknown`]: the transaction may commit.
    async fn commit_status(
        &self,
        identity: &SigningIdentity,
        tx_id: &str,
    ) -> Result<gateway::CommitStatusResponse, LedgerError> {
        let status = proposal::signed_commit_status_request(identity, &self.channel, tx_id);
        let deadline = Instant::now() + self.timeouts.commit_status();
        let what = format!("commit status of {tx_id}");
        let mut round = 0u32;
        let mut last = String::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(LedgerError::OutcomeUnknown {
                    tx_id: tx_id.to_owned(),
                    reason: format!(
                        "no commit status within {:?}{}{last}",
                        self.timeouts.commit_status(),
                        if last.is_empty() { "" } else { ": " }
                    ),
                });
            }
            let result = self
                .shared
                .on_peers("commit_status", &what, remaining, |mut client| {
                    let r = request(status.clone(), remaining);
                    async move { client.commit_status(r).await }
                })
                .await;
            match result {
                Ok((committed, _)) => return Ok(committed),
                // Every peer is unreachable or busy (the Gateway's concurrency limit): the
                // question is a read, so ask again until the deadline.
                Err(Failed {
                    error: LedgerError::Unavailable(reason),
                    ..
                }) => {
                    tracing::debug!(%tx_id, round, %reason, "commit status not available; asking again");
                    last = reason;
                    let pause = Duration::from_millis(100 << round.min(4));
                    tokio::time::sleep(pause.min(remaining)).await;
                    round += 1;
                }
                Err(failed) => {
                    return Err(LedgerError::OutcomeUnknown {
                        tx_id: tx_id.to_owned(),
                        reason: failed.error.to_string(),
                    })
                }
            }
        }
    }
}

/// The gRPC endpoint for one peer: TLS settings and connect timeout.
fn endpoint(profile: &ConnectionProfile, peer: &PeerConfig) -> Result<Endpoint, LedgerError> {
    let field_error = |field: &str, e: &dyn std::fmt::Display| {
        LedgerError::Internal(format!("connection profile field {field}: {e}"))
    };
    let mut endpoint = Endpoint::from_shared(peer.endpoint.clone())
        .map_err(|e| field_error(&peer.field, &e))?
        .connect_timeout(profile.timeouts.connect())
        // Keep-alives notice a dead peer under a quiet event stream. Fabric peers disconnect
        // clients that ping more often than `peer.keepalive.minInterval` (default 60 s).
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if let (Scheme::Https, Some(ca)) = (
        peer.scheme().map_err(|(f, m)| field_error(&f, &m))?,
        &peer.tls_ca_certificate,
    ) {
        let ca = profile.read("tls_ca_certificate", ca)?;
        if !ca.contains("-----BEGIN CERTIFICATE-----") {
            return Err(field_error("tls_ca_certificate", &"not a PEM certificate"));
        }
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some(name) = &peer.tls_server_name {
            tls = tls.domain_name(name.clone());
        }
        if let (Some(cert), Some(key)) = (&profile.tls_client_certificate, &profile.tls_client_key)
        {
            let cert = profile.read("tls_client_certificate", cert)?;
            let key = profile.read("tls_client_key", key)?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| field_error("tls_ca_certificate", &error_chain(&e)))?;
    }
    Ok(endpoint)
}

fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

#[async_trait::async_trait]
impl Ledger for FabricLedger {
    async fn submit(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<Submitted, LedgerError> {
        let proposed = self.proposal(identity, function, argument)?;
        let tx_id = proposed.tx_id.clone();
        tracing::debug!(%tx_id, function, "endorsing");

        let (mut envelope, endorser) = self
            .endorse(proposed, &format!("endorse {function}"))
            .await?;
        let response = proposal::prepared_result(&envelope, &tx_id)?;
        proposal::sign_envelope(identity, &mut envelope);

        // From here on the transaction may reach the ordering service. The same signed envelope
        // may go through another peer when one fails (a transaction id commits at most once);
        // a failure leaves the outcome unknown unless no peer can have handed it over.
        let submit = gateway::SubmitRequest {
            transaction_id: tx_id.clone(),
            channel_id: self.channel.clone(),
            prepared_transaction: Some(envelope),
        };
        let timeout = self.timeouts.submit();
        let submitted = self
            .shared
            .on_peers(
                "submit",
                &format!("submit {function} ({tx_id})"),
                timeout,
                |mut c| {
                    let r = request(submit.clone(), timeout);
                    async move { c.submit(r).await }
                },
            )
            .await;
        if let Err(failed) = submitted {
            let not_sent = failed
                .failures
                .iter()
                .all(|f| matches!(f, Failure::Status(s) if submit_not_sent(s)));
            return Err(if not_sent {
                failed.error
            } else {
                LedgerError::OutcomeUnknown {
                    tx_id,
                    reason: failed.error.to_string(),
                }
            });
        }

        let committed = self.commit_status(identity, &tx_id).await?;
        if committed.result != peer::TxValidationCode::Valid as i32 {
            return Err(LedgerError::Conflict {
                tx_id,
                reason: validation_code_name(committed.result),
            });
        }
        tracing::debug!(%tx_id, block = committed.block_number, endorser = %self.shared.peers[endorser].label, "committed");
        Ok(Submitted {
            tx_id,
            block: committed.block_number,
            response,
        })
    }

    async fn evaluate(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<Vec<u8>, LedgerError> {
        let proposed = self.proposal(identity, function, argument)?;
        let evaluate = gateway::EvaluateRequest {
            transaction_id: proposed.tx_id,
            channel_id: self.channel.clone(),
            proposed_transaction: Some(proposed.proposal),
            target_organizations: Vec::new(),
        };
        let timeout = self.timeouts.evaluate();
        let what = format!("evaluate {function}");
        let (evaluated, _) = self
            .shared
            .on_peers("evaluate", &what, timeout, |mut c| {
                let r = request(evaluate.clone(), timeout);
                async move { c.evaluate(r).await }
            })
            .await
            .map_err(|f| f.error)?;
        let result = evaluated
            .result
            .ok_or_else(|| LedgerError::Internal(format!("{what}: the peer returned no result")))?;
        match result.status {
            200..=399 => Ok(result.payload),
            status @ 400..=499 => Err(LedgerError::Rejected {
                status: status as u16,
                message: result.message,
            }),
            status => Err(LedgerError::Internal(format!(
                "{what}: the contract failed with status {status}: {}",
                result.message
            ))),
        }
    }

    async fn evidence(
        &self,
        identity: &SigningIdentity,
        query: &tom_contract::requests::LineageQuery,
    ) -> Result<crate::evidence::Bundle, LedgerError> {
        self.build_evidence(identity, query).await
    }

    fn subscribe(&self) -> broadcast::Receiver<CommittedEvent> {
        self.events.subscribe()
    }

    /// A 400 unless `tx_id` committed an event of this chaincode in `block` (`qscc
    /// GetBlockByNumber`, [`replay`]); then a `ChaincodeEvents` stream opened just after the
    /// event, read until the batch of the last committed block (the channel height read first) or until no batch arrives for
    /// [`REPLAY_IDLE`] (blocks without events send nothing).
    async fn replay_after(
        &self,
        block: u64,
        tx_id: &str,
    ) -> Result<Vec<CommittedEvent>, LedgerError> {
        let height = chain_height(&self.shared, &self.default_identity, &self.channel).await?;
        if block >= height {
            return Err(LedgerError::Rejected {
                status: 400,
                message: format!("event id {block}.{tx_id} names block {block}, beyond the channel height {height}"),
            });
        }
        // The Gateway would skip the block's events up to a transaction that is not there.
        self.check_resume_point(block, tx_id).await?;
        let from = EventsFrom::After {
            block,
            tx_id: tx_id.to_owned(),
        };
        let request = proposal::signed_chaincode_events_request(
            &self.default_identity,
            &self.channel,
            &self.chaincode,
            &from,
        );
        let peer = self.shared.preferred.load(Ordering::Relaxed) % self.shared.peers.len();
        let mut stream = self.shared.peers[peer]
            .client
            .clone()
            .chaincode_events(request)
            .await
            .map_err(|status| from_status("chaincode events", &status))?
            .into_inner();
        let mut events = Vec::new();
        loop {
            match tokio::time::timeout(REPLAY_IDLE, stream.message()).await {
                Ok(Ok(Some(batch))) => {
                    let number = batch.block_number;
                    events.extend(batch.events.into_iter().map(|event| CommittedEvent {
                        tx_id: event.tx_id,
                        block: number,
                        name: event.event_name,
                        payload: event.payload,
                    }));
                    if number + 1 >= height {
                        return Ok(events);
                    }
                }
                Ok(Ok(None)) | Err(_) => return Ok(events),
                Ok(Err(status)) => return Err(from_status("chaincode events", &status)),
            }
        }
    }

    fn describe(&self) -> String {
        let peers: Vec<&str> = self
            .shared
            .peers
            .iter()
            .map(|p| p.endpoint.as_str())
            .collect();
        format!(
            "Fabric peer{} {} (channel {}, chaincode {}, default identity {})",
            if peers.len() > 1 { "s" } else { "" },
            peers.join(", "),
            self.channel,
            self.chaincode,
            self.default_identity.msp_id
        )
    }

    fn readiness(&self) -> Readiness {
        self.shared
            .readiness
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn metrics(&self) -> String {
        let stats = self.shared.lock_stats();
        let peers = &self.shared.peers;
        let mut out = String::new();
        out.push_str("# HELP tom_fabric_peer_calls_total Fabric Gateway calls by peer, call and result (ok, refused, unavailable, error).\n# TYPE tom_fabric_peer_calls_total counter\n");
        for ((peer, call, result), n) in &stats.calls {
            let _ = writeln!(
                out,
                "tom_fabric_peer_calls_total{{peer=\"{}\",call=\"{call}\",result=\"{result}\"}} {n}",
                peers[*peer].label
            );
        }
        out.push_str("# HELP tom_fabric_failovers_total Fabric calls answered by another peer than the one asked first.\n# TYPE tom_fabric_failovers_total counter\n");
        for (call, n) in &stats.failovers {
            let _ = writeln!(out, "tom_fabric_failovers_total{{call=\"{call}\"}} {n}");
        }
        out.push_str("# HELP tom_fabric_peer_up Whether the peer answered the last readiness probe with the chaincode reachable.\n# TYPE tom_fabric_peer_up gauge\n");
        for (i, up) in stats.peer_up.iter().enumerate() {
            if let Some(up) = up {
                let _ = writeln!(
                    out,
                    "tom_fabric_peer_up{{peer=\"{}\"}} {}",
                    peers[i].label,
                    u8::from(*up)
                );
            }
        }
        out.push_str("# HELP tom_fabric_event_stream_peer 1 for the peer whose chaincode event stream is open.\n# TYPE tom_fabric_event_stream_peer gauge\n");
        for (i, peer) in peers.iter().enumerate() {
            let _ = writeln!(
                out,
                "tom_fabric_event_stream_peer{{peer=\"{}\"}} {}",
                peer.label,
                u8::from(stats.event_peer == Some(i))
            );
        }
        let preferred = self.shared.preferred.load(Ordering::Relaxed) % peers.len();
        out.push_str("# HELP tom_fabric_preferred_peer 1 for the peer Fabric calls go to first (the one that answered last).\n# TYPE tom_fabric_preferred_peer gauge\n");
        for (i, peer) in peers.iter().enumerate() {
            let _ = writeln!(
                out,
                "tom_fabric_preferred_peer{{peer=\"{}\"}} {}",
                peer.label,
                u8::from(preferred == i)
            );
        }
        out
    }
}

/// How long a replay waits for the next batch before it takes the stream as caught up.
const REPLAY_IDLE: Duration = Duration::from_secs(2);

/// The channel's height (the number of the next block to commit), from the peer's query system
/// chaincode, on any peer.
async fn chain_height(
    shared: &Shared,
    identity: &SigningIdentity,
    channel: &str,
) -> Result<u64, LedgerError> {
    let nonce = proposal::new_nonce(shared.tx_ids.as_ref())?;
    let proposed = proposal::signed_invocation(
        identity,
        channel,
        "qscc",
        &[b"GetChainInfo", channel.as_bytes()],
        &nonce,
        proposal::timestamp(shared.clock.as_ref()),
    );
    let evaluate = gateway::EvaluateRequest {
        transaction_id: proposed.tx_id,
        channel_id: channel.to_owned(),
        proposed_transaction: Some(proposed.proposal),
        target_organizations: Vec::new(),
    };
    let timeout = Duration::from_secs(10);
    let what = "qscc GetChainInfo";
    let (evaluated, _) = shared
        .on_peers("evaluate", what, timeout, |mut c| {
            let r = request(evaluate.clone(), timeout);
            async move { c.evaluate(r).await }
        })
        .await
        .map_err(|f| f.error)?;
    let result = evaluated
        .result
        .ok_or_else(|| LedgerError::Internal(format!("{what}: the peer returned no result")))?;
    if result.status != 200 {
        return Err(LedgerError::Internal(format!(
            "{what}: status {}: {}",
            result.status, result.message
        )));
    }
    let info = protos::common::BlockchainInfo::decode(result.payload.as_slice())
        .map_err(|e| LedgerError::Internal(format!("{what}: not a BlockchainInfo: {e}")))?;
    Ok(info.height)
}

/// Keeps a `ChaincodeEvents` stream open for the ledger's lifetime and forwards every event.
///
/// A Gateway stream answers only when its first event commits, so this must never run on a
/// caller's path. When the stream breaks, the task logs why and reopens it on the next peer of
/// the profile (the same one when there is one), just after the last event it forwarded, so
/// subscribers see each committed event once whichever peer delivers it (a peer that has not
/// yet committed that block waits for it). Before the first event, the stream is anchored at
/// the channel height read when the task started (`qscc GetChainInfo`), so a break before any
/// event loses nothing either, and nothing committed after `connect` returned is missed even
/// if the stream opens late. When the height cannot be read (the identity may not query
/// `qscc`), the stream starts at the next commit. Once every peer has been tried, the pause
/// between attempts doubles up to 10 s.
async fn run_event_stream(
    shared: Arc<Shared>,
    identity: SigningIdentity,
    channel: String,
    chaincode: String,
    sender: broadcast::Sender<CommittedEvent>,
) {
    let mut from = EventsFrom::NextCommit;
    let mut peer = shared.preferred.load(Ordering::Relaxed) % shared.peers.len();
    let mut failures = 0u32;
    let set_event_peer = |peer: Option<usize>| shared.lock_stats().event_peer = peer;
    loop {
        if from == EventsFrom::NextCommit {
            match chain_height(&shared, &identity, &channel).await {
                Ok(height) => from = EventsFrom::Block(height),
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "cannot read the channel height; events start at the next commit")
                }
            }
        }
        let label = shared.peers[peer].label.clone();
        let request =
            proposal::signed_chaincode_events_request(&identity, &channel, &chaincode, &from);
        match shared.peers[peer]
            .client
            .clone()
            .chaincode_events(request)
            .await
        {
            Ok(response) => {
                tracing::info!(peer = %label, %channel, %chaincode, from = ?from, "chaincode event stream open");
                set_event_peer(Some(peer));
                shared.record(peer, "chaincode_events", &Ok(()));
                let opened = Instant::now();
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(batch)) => {
                            failures = 0;
                            for event in batch.events {
                                from = EventsFrom::After {
                                    block: batch.block_number,
                                    tx_id: event.tx_id.clone(),
                                };
                                // No subscriber is not an error: events are "from now on".
                                let _ = sender.send(CommittedEvent {
                                    tx_id: event.tx_id,
                                    block: batch.block_number,
                                    name: event.event_name,
                                    payload: event.payload,
                                });
                            }
                        }
                        Ok(None) => {
                            tracing::warn!(peer = %label, %channel, %chaincode, "chaincode event stream ended; reopening");
                            break;
                        }
                        Err(status) => {
                            let error = from_status("chaincode events", &status);
                            shared.record(peer, "chaincode_events", &Err(&error));
                            tracing::warn!(peer = %label, %channel, %chaincode, %error, "chaincode event stream failed; reopening");
                            break;
                        }
                    }
                }
                set_event_peer(None);
                if opened.elapsed() > Duration::from_secs(30) {
                    failures = 0;
                }
            }
            Err(status) => {
                let error = from_status("chaincode events", &status);
                shared.record(peer, "chaincode_events", &Err(&error));
                tracing::warn!(peer = %label, %channel, %chaincode, %error, "cannot open the chaincode event stream");
            }
        }
        failures += 1;
        peer = (peer + 1) % shared.peers.len();
        let peers = shared.peers.len() as u32;
        let pause = if failures <= peers {
            EVENT_BACKOFF.0
        } else {
            (EVENT_BACKOFF.0 * 2u32.saturating_pow((failures - peers).min(16))).min(EVENT_BACKOFF.1)
        };
        tokio::time::sleep(pause).await;
    }
}

/// Every [`PROBE_INTERVAL`], evaluates the chaincode's `GetMetadata` on each peer (each within
/// `timeout`) and sets the ledger's readiness: ready when at least one peer answers with the
/// chaincode reachable; otherwise each peer's reason.
async fn run_probe(
    shared: Arc<Shared>,
    identity: SigningIdentity,
    channel: String,
    chaincode: String,
    timeout: Duration,
) {
    loop {
        let mut up = Vec::new();
        let mut down = Vec::new();
        for (i, peer) in shared.peers.iter().enumerate() {
            let verdict = probe(&shared, peer, &identity, &channel, &chaincode, timeout).await;
            shared.lock_stats().peer_up[i] = Some(verdict.is_ok());
            match verdict {
                Ok(()) => up.push(peer.label.clone()),
                Err(reason) => down.push(format!("{}: {reason}", peer.label)),
            }
        }
        let readiness = if up.is_empty() {
            Readiness::not_ready(format!(
                "no Fabric peer answers with chaincode {chaincode} reachable: {}",
                down.join("; ")
            ))
        } else {
            Readiness::ready(format!(
                "Fabric peer{} {} answer{} with chaincode {chaincode} reachable{}",
                if up.len() > 1 { "s" } else { "" },
                up.join(", "),
                if up.len() > 1 { "" } else { "s" },
                if down.is_empty() {
                    String::new()
                } else {
                    format!(" (not: {})", down.join("; "))
                }
            ))
        };
        let changed = {
            let mut current = shared
                .readiness
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = current.ready != readiness.ready;
            *current = readiness.clone();
            changed
        };
        if changed {
            if readiness.ready {
                tracing::info!(detail = %readiness.detail, "Fabric ledger ready");
            } else {
                tracing::warn!(detail = %readiness.detail, "Fabric ledger not ready");
            }
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// One readiness probe of one peer: `Ok` when it runs the chaincode (any answer from the
/// contract, even a refusal, proves the chaincode reachable).
async fn probe(
    sources: &Shared,
    peer: &Peer,
    identity: &SigningIdentity,
    channel: &str,
    chaincode: &str,
    timeout: Duration,
) -> Result<(), String> {
    let nonce = proposal::new_nonce(sources.tx_ids.as_ref()).map_err(|e| e.to_string())?;
    let proposed = proposal::signed_invocation(
        identity,
        channel,
        chaincode,
        &[PROBE_FUNCTION.as_bytes()],
        &nonce,
        proposal::timestamp(sources.clock.as_ref()),
    );
    let evaluate = gateway::EvaluateRequest {
        transaction_id: proposed.tx_id,
        channel_id: channel.to_owned(),
        proposed_transaction: Some(proposed.proposal),
        target_organizations: Vec::new(),
    };
    let mut client = peer.client.clone();
    match tokio::time::timeout(timeout, client.evaluate(request(evaluate, timeout))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => {
            if errors::chaincode_response(status.message()).is_some()
                || errors::error_details(&status)
                    .iter()
                    .any(|d| errors::chaincode_response(&d.message).is_some())
            {
                Ok(())
            } else {
                Err(from_status("evaluate GetMetadata", &status).to_string())
            }
        }
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}
