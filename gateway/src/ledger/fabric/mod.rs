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
//! The protobuf messages and the gRPC service stubs are the real Fabric definitions, generated
//! for tonic 0.14 by the `fabric-sdk` crate (used for its `fabric` proto modules only; see
//! [`protos`]; that crate's build script runs `protoc`, which `scripts/setup/10-protoc.sh`
//! installs). This module keeps no private key but the default identity's, never
//! retries a submit on its own (a retried submit is a new transaction) and never blocks a
//! caller on the event stream.

pub mod errors;
pub mod profile;
pub mod proposal;

use std::time::Duration;

use prost::Message;
use tokio::sync::broadcast;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub use profile::{ConnectionProfile, Scheme, Timeouts};

use self::errors::{error_chain, from_status, validation_code_name};
use self::proposal::EventsFrom;
use self::protos::gateway::gateway_client::GatewayClient;
use self::protos::{gateway, peer};
use super::{CommittedEvent, Ledger, LedgerError, SigningIdentity, Submitted};

/// The Fabric protobuf packages this back end speaks, re-exported so that tests and tools use
/// exactly the same definitions.
pub mod protos {
    pub use fabric_sdk::fabric::google_protobuf::Timestamp;
    pub use fabric_sdk::fabric::{common, gateway, msp, orderer, protos as peer, rwset};
}

/// How long the event task waits before reopening a broken stream: doubling from the first
/// value up to the second.
const EVENT_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(10));

/// Between HTTP/2 pings: above the 60 s minimum a Fabric peer enforces.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(90);

/// The largest gRPC message accepted or sent: Fabric's own default (100 MiB), not tonic's 4 MiB,
/// so that large query results (a PROV export) come through as they do from the peer CLI.
const MAX_MESSAGE_SIZE: usize = 100 * 1024 * 1024;

/// A Fabric network reached through one peer's Gateway service.
pub struct FabricLedger {
    client: GatewayClient<Channel>,
    channel: String,
    chaincode: String,
    endpoint: String,
    timeouts: Timeouts,
    default_identity: SigningIdentity,
    events: broadcast::Sender<CommittedEvent>,
    // The event task lives as long as the ledger (aborted on drop): it owns nothing but a clone
    // of the gRPC channel and the sender.
    event_task: tokio::task::JoinHandle<()>,
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
        self.event_task.abort();
    }
}

impl FabricLedger {
    /// Connects to the profile's peer (TLS with the profile's CA unless the endpoint is
    /// `http://`) and starts the chaincode-event task. Fails with
    /// [`LedgerError::Unavailable`] when the peer cannot be reached or its TLS certificate is not
    /// trusted, and with [`LedgerError::Internal`] for a bad profile.
    pub async fn connect(profile: &ConnectionProfile) -> Result<FabricLedger, LedgerError> {
        profile.validate().map_err(|(field, message)| {
            LedgerError::Internal(format!("connection profile field {field}: {message}"))
        })?;
        let default_identity = profile.identity()?;
        let endpoint = endpoint(profile)?;
        let connection = endpoint.connect().await.map_err(|e| {
            LedgerError::Unavailable(format!(
                "cannot connect to the Fabric peer at {}: {}",
                profile.peer_endpoint,
                error_chain(&e)
            ))
        })?;
        let client = GatewayClient::new(connection)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let events = broadcast::channel(1024).0;
        let event_task = tokio::spawn(run_event_stream(
            client.clone(),
            default_identity.clone(),
            profile.channel.clone(),
            profile.chaincode.clone(),
            events.clone(),
        ));
        Ok(FabricLedger {
            client,
            channel: profile.channel.clone(),
            chaincode: profile.chaincode.clone(),
            endpoint: profile.peer_endpoint.clone(),
            timeouts: profile.timeouts,
            default_identity,
            events,
            event_task,
        })
    }

    /// The profile's identity, for callers that act as the gateway itself.
    pub fn default_identity(&self) -> &SigningIdentity {
        &self.default_identity
    }

    fn proposal(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<proposal::SignedProposal, LedgerError> {
        let nonce = proposal::new_nonce()?;
        Ok(proposal::signed_proposal(
            identity,
            &self.channel,
            &self.chaincode,
            function,
            argument,
            &nonce,
            proposal::now(),
        ))
    }
}

/// The gRPC endpoint for a profile: TLS settings and connect timeout.
fn endpoint(profile: &ConnectionProfile) -> Result<Endpoint, LedgerError> {
    let field_error = |field: &str, e: &dyn std::fmt::Display| {
        LedgerError::Internal(format!("connection profile field {field}: {e}"))
    };
    let mut endpoint = Endpoint::from_shared(profile.peer_endpoint.clone())
        .map_err(|e| field_error("peer_endpoint", &e))?
        .connect_timeout(profile.timeouts.connect())
        // Keep-alives notice a dead peer under a quiet event stream. Fabric peers disconnect
        // clients that ping more often than `peer.keepalive.minInterval` (default 60 s).
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if let (Scheme::Https, Some(ca)) = (
        profile.scheme().map_err(|(f, m)| field_error(f, &m))?,
        &profile.tls_ca_certificate,
    ) {
        let ca = profile.read("tls_ca_certificate", ca)?;
        if !ca.contains("-----BEGIN CERTIFICATE-----") {
            return Err(field_error("tls_ca_certificate", &"not a PEM certificate"));
        }
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some(name) = &profile.tls_server_name {
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

/// How often a commit-status read is repeated when the peer's Gateway throttle refuses it.
const COMMIT_STATUS_RETRIES: u32 = 4;

/// Runs one Gateway call with a deadline (sent to the peer as `grpc-timeout`, and enforced here).
async fn call<T, F>(what: &str, timeout: Duration, call: F) -> Result<T, LedgerError>
where
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(from_status(what, &status)),
        Err(_) => Err(LedgerError::Unavailable(format!(
            "{what}: no answer from the peer within {timeout:?}"
        ))),
    }
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

        let endorse = gateway::EndorseRequest {
            transaction_id: tx_id.clone(),
            channel_id: self.channel.clone(),
            proposed_transaction: Some(proposed.proposal),
            endorsing_organizations: Vec::new(),
        };
        let timeout = self.timeouts.endorse();
        let endorsed = call(
            &format!("endorse {function} via {}", self.endpoint),
            timeout,
            self.client.clone().endorse(request(endorse, timeout)),
        )
        .await?;
        let mut envelope = endorsed.prepared_transaction.ok_or_else(|| {
            LedgerError::Internal(format!(
                "endorse {function}: the peer returned no prepared transaction"
            ))
        })?;
        let response = proposal::prepared_result(&envelope, &tx_id)?;
        proposal::sign_envelope(identity, &mut envelope);

        let submit = gateway::SubmitRequest {
            transaction_id: tx_id.clone(),
            channel_id: self.channel.clone(),
            prepared_transaction: Some(envelope),
        };
        let timeout = self.timeouts.submit();
        call(
            &format!("submit {function} ({tx_id}) via {}", self.endpoint),
            timeout,
            self.client.clone().submit(request(submit, timeout)),
        )
        .await?;

        let status = proposal::signed_commit_status_request(identity, &self.channel, &tx_id);
        let timeout = self.timeouts.commit_status();
        // From here on the transaction is with the orderer: a failure to learn its fate does not
        // mean it was not recorded, and the message says so (a retry is a new transaction).
        // Asking for the commit status is a read: when the peer is briefly overloaded (its
        // Gateway concurrency limit) ask again rather than hand the caller an unknown outcome,
        // which would invite a duplicate resubmission.
        let mut attempt = 0u32;
        let committed = loop {
            let result = call(
                &format!("commit status of {tx_id} (submitted; its outcome is unknown)"),
                timeout,
                self.client
                    .clone()
                    .commit_status(request(status.clone(), timeout)),
            )
            .await;
            match result {
                Err(LedgerError::Unavailable(reason))
                    if attempt < COMMIT_STATUS_RETRIES && reason.contains("concurrency limit") =>
                {
                    attempt += 1;
                    tracing::debug!(%tx_id, attempt, %reason, "commit status unavailable; asking again");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                other => break other?,
            }
        };
        if committed.result != peer::TxValidationCode::Valid as i32 {
            return Err(LedgerError::Conflict {
                tx_id,
                reason: validation_code_name(committed.result),
            });
        }
        tracing::debug!(%tx_id, block = committed.block_number, "committed");
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
        let what = format!("evaluate {function} via {}", self.endpoint);
        let evaluated = call(
            &what,
            timeout,
            self.client.clone().evaluate(request(evaluate, timeout)),
        )
        .await?;
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

    fn subscribe(&self) -> broadcast::Receiver<CommittedEvent> {
        self.events.subscribe()
    }

    fn describe(&self) -> String {
        format!(
            "Fabric peer {} (channel {}, chaincode {}, default identity {})",
            self.endpoint, self.channel, self.chaincode, self.default_identity.msp_id
        )
    }
}

/// The channel's height (the number of the next block to commit), from the peer's query system
/// chaincode.
async fn chain_height(
    client: &GatewayClient<Channel>,
    identity: &SigningIdentity,
    channel: &str,
) -> Result<u64, LedgerError> {
    let nonce = proposal::new_nonce()?;
    let proposed = proposal::signed_invocation(
        identity,
        channel,
        "qscc",
        &[b"GetChainInfo", channel.as_bytes()],
        &nonce,
        proposal::now(),
    );
    let evaluate = gateway::EvaluateRequest {
        transaction_id: proposed.tx_id,
        channel_id: channel.to_owned(),
        proposed_transaction: Some(proposed.proposal),
        target_organizations: Vec::new(),
    };
    let timeout = Duration::from_secs(10);
    let what = "qscc GetChainInfo";
    let evaluated = call(
        what,
        timeout,
        client.clone().evaluate(request(evaluate, timeout)),
    )
    .await?;
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
/// caller's path. When the stream breaks, the task logs why, waits (exponential backoff) and
/// reopens it just after the last event it forwarded, so subscribers see each committed event
/// once. Before the first event, the stream is anchored at the channel height read when the
/// task started (`qscc GetChainInfo`), so a break before any event loses nothing either, and
/// nothing committed after `connect` returned is missed even if the stream opens late. When
/// the height cannot be read (the identity may not query `qscc`), the stream starts at the next
/// commit.
async fn run_event_stream(
    client: GatewayClient<Channel>,
    identity: SigningIdentity,
    channel: String,
    chaincode: String,
    sender: broadcast::Sender<CommittedEvent>,
) {
    let mut from = EventsFrom::NextCommit;
    let mut backoff = EVENT_BACKOFF.0;
    loop {
        if from == EventsFrom::NextCommit {
            match chain_height(&client, &identity, &channel).await {
                Ok(height) => from = EventsFrom::Block(height),
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "cannot read the channel height; events start at the next commit")
                }
            }
        }
        let request =
            proposal::signed_chaincode_events_request(&identity, &channel, &chaincode, &from);
        match client.clone().chaincode_events(request).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(batch)) => {
                            backoff = EVENT_BACKOFF.0;
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
                            tracing::warn!(%channel, %chaincode, "chaincode event stream ended; reopening");
                            break;
                        }
                        Err(status) => {
                            tracing::warn!(%channel, %chaincode, error = %from_status("chaincode events", &status), "chaincode event stream failed; reopening");
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                tracing::warn!(%channel, %chaincode, error = %from_status("chaincode events", &status), "cannot open the chaincode event stream");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(EVENT_BACKOFF.1);
    }
}
