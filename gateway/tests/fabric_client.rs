//! The Fabric back end against a test Fabric Gateway: a tonic gRPC server on 127.0.0.1:0 with
//! TLS (certificates made by rcgen for each run) that speaks the real Fabric protobuf messages.
//!
//! The test peer does what a Fabric peer's Gateway checks before anything runs: it decodes every
//! message, recomputes the transaction id from nonce and creator, verifies the proposal, envelope,
//! commit-status and event-stream signatures against the creator's certificate (rejecting high-S
//! signatures), and only then runs the real contract on a `MemoryLedger` (endorse at `Endorse`,
//! MVCC-validate and commit at the block cut that follows `Submit`). Its errors have the shape
//! of Fabric 2.5's (`chaincode response <status>, <message>` in `gateway.ErrorDetail`s).

mod wait;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p256::ecdsa::signature::Verifier;
use prost::Message;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tom_contract::memory::{Endorsed, MemoryLedger, SubmitError};
use tom_contract::simulation::MvccConflict;
use tom_contract::{Creator, Timestamp as TxTimestamp};
use tom_gateway::ledger::fabric::protos::gateway::gateway_server::{Gateway, GatewayServer};
use tom_gateway::ledger::fabric::protos::{common, gateway, msp, orderer, peer};
use tom_gateway::ledger::fabric::{ConnectionProfile, FabricLedger};
use tom_gateway::ledger::memory::InMemoryLedger;
use tom_gateway::ledger::{Ledger, LedgerError, SigningIdentity};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Identity as TlsIdentity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

const CHANNEL: &str = "tom";
const CHAINCODE: &str = "tom";
/// The peer's query system chaincode (the client reads the channel height from it).
const QSCC: &str = "qscc";
const PEER_HOST: &str = "peer0.org1.example.com";
/// What the client's readiness probe evaluates.
const METADATA: &str = "org.hyperledger.fabric:GetMetadata";

// ---------------------------------------------------------------------------------------------
// The test peer.

#[derive(Clone)]
struct Block {
    number: u64,
    events: Vec<peer::ChaincodeEvent>,
    /// The submitted envelopes, in order, and their validation codes (qscc GetBlockByNumber).
    envelopes: Vec<Vec<u8>>,
    codes: Vec<u8>,
}

#[derive(Default)]
struct PeerState {
    ledger: MemoryLedger,
    /// Endorsed, not yet submitted: the transaction and the envelope payload handed out.
    endorsed: HashMap<String, (Endorsed, Vec<u8>)>,
    /// Submitted, waiting for the block cut.
    queue: Vec<Endorsed>,
    /// tx id → the signed envelope submitted, until its block is cut.
    envelopes: HashMap<String, Vec<u8>>,
    /// tx id → (validation code, block).
    statuses: HashMap<String, (i32, u64)>,
    blocks: Vec<Block>,
    calls: HashMap<&'static str, usize>,
}

struct TestPeer {
    // A std Mutex: every critical section is short and synchronous, never across an await.
    state: Mutex<PeerState>,
    /// Transactions per block: the block is cut when this many are queued (an orderer's batch).
    batch_size: AtomicUsize,
    /// Each organisation's endorsing peer: serialized identity and PKCS#8 key.
    endorsers: Vec<(Vec<u8>, String)>,
    height: watch::Sender<u64>,
    live_blocks: broadcast::Sender<Block>,
    streams_opened: watch::Sender<usize>,
    reset_streams: broadcast::Sender<()>,
    /// While set, new event streams are refused (as a restarting peer would).
    refuse_streams: AtomicBool,
}

fn invalid(what: &str) -> impl Fn(prost::DecodeError) -> Status + '_ {
    move |e| Status::invalid_argument(format!("{what}: {e}"))
}

/// Checks `signature` over `message` against the certificate in a serialized identity, as a
/// peer's MSP does; low-S is required.
fn verify(serialized_identity: &[u8], message: &[u8], signature: &[u8]) -> Result<Creator, Status> {
    use p256::pkcs8::DecodePublicKey;
    let identity =
        msp::SerializedIdentity::decode(serialized_identity).map_err(invalid("creator"))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&identity.id_bytes)
        .map_err(|e| Status::invalid_argument(format!("creator certificate is not PEM: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| Status::invalid_argument(format!("creator certificate: {e}")))?;
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(cert.public_key().raw)
        .map_err(|e| Status::invalid_argument(format!("creator key is not P-256: {e}")))?;
    let signature = p256::ecdsa::Signature::from_der(signature)
        .map_err(|e| Status::invalid_argument(format!("signature is not DER ECDSA: {e}")))?;
    if signature.normalize_s().is_some() {
        return Err(Status::invalid_argument("signature is not low-S"));
    }
    key.verify(message, &signature).map_err(|_| {
        Status::permission_denied("signature does not verify against the creator's certificate")
    })?;
    Ok(Creator {
        msp_id: identity.mspid,
        certificate_pem: identity.id_bytes,
    })
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(part);
    }
    context.finish().as_ref().to_vec()
}

/// A decoded, verified proposal.
struct Proposal {
    tx_id: String,
    chaincode: String,
    creator: Creator,
    timestamp: TxTimestamp,
    function: String,
    argument: Vec<u8>,
    /// Arguments after the first (only qscc takes them: GetBlockByNumber <channel> <number>).
    more: Vec<Vec<u8>>,
    header: common::Header,
    payload: Vec<u8>,
}

fn check_proposal(
    signed: Option<&peer::SignedProposal>,
    tx_id: &str,
    channel: &str,
) -> Result<Proposal, Status> {
    let signed = signed.ok_or_else(|| Status::invalid_argument("a signed proposal is required"))?;
    let proposal =
        peer::Proposal::decode(signed.proposal_bytes.as_slice()).map_err(invalid("proposal"))?;
    let header = common::Header::decode(proposal.header.as_slice()).map_err(invalid("header"))?;
    let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(invalid("channel header"))?;
    let signature_header = common::SignatureHeader::decode(header.signature_header.as_slice())
        .map_err(invalid("signature header"))?;
    if channel_header.r#type != common::HeaderType::EndorserTransaction as i32 {
        return Err(Status::invalid_argument(format!(
            "header type {} is not ENDORSER_TRANSACTION",
            channel_header.r#type
        )));
    }
    if channel_header.channel_id != CHANNEL || channel != CHANNEL {
        return Err(Status::not_found(format!(
            "channel {:?} / {:?} not found",
            channel_header.channel_id, channel
        )));
    }
    let extension = peer::ChaincodeHeaderExtension::decode(channel_header.extension.as_slice())
        .map_err(invalid("header extension"))?;
    let chaincode = extension.chaincode_id.map(|c| c.name).unwrap_or_default();
    if chaincode != CHAINCODE && chaincode != QSCC {
        return Err(Status::not_found(format!(
            "chaincode {chaincode:?} is not deployed"
        )));
    }
    if signature_header.nonce.len() != 24 {
        return Err(Status::invalid_argument(format!(
            "nonce of {} bytes",
            signature_header.nonce.len()
        )));
    }
    let expected_tx_id = hex::encode(sha256(&[
        &signature_header.nonce,
        &signature_header.creator,
    ]));
    if channel_header.tx_id != expected_tx_id || tx_id != expected_tx_id {
        return Err(Status::invalid_argument(format!(
            "transaction id {} / {} is not sha256(nonce ‖ creator) = {expected_tx_id}",
            channel_header.tx_id, tx_id
        )));
    }
    let creator = verify(
        &signature_header.creator,
        &signed.proposal_bytes,
        &signed.signature,
    )?;
    let payload = peer::ChaincodeProposalPayload::decode(proposal.payload.as_slice())
        .map_err(invalid("proposal payload"))?;
    let spec = peer::ChaincodeInvocationSpec::decode(payload.input.as_slice())
        .map_err(invalid("invocation spec"))?
        .chaincode_spec
        .ok_or_else(|| Status::invalid_argument("no chaincode spec"))?;
    if spec.chaincode_id.map(|c| c.name) != Some(chaincode.clone()) {
        return Err(Status::invalid_argument(
            "chaincode spec and header extension name different chaincodes",
        ));
    }
    let mut args = spec
        .input
        .ok_or_else(|| Status::invalid_argument("no chaincode input"))?
        .args
        .into_iter();
    let (function, argument) = (args.next(), args.next());
    let more: Vec<Vec<u8>> = args.collect();
    // A contract's GetMetadata takes no argument (the client's readiness probe).
    let (Some(function), true) = (function, more.is_empty() || chaincode == QSCC) else {
        return Err(Status::invalid_argument(
            "expected args [function, argument]",
        ));
    };
    let function_is_metadata = function == METADATA.as_bytes();
    let timestamp = channel_header
        .timestamp
        .ok_or_else(|| Status::invalid_argument("no timestamp"))?;
    Ok(Proposal {
        tx_id: expected_tx_id,
        chaincode,
        creator,
        timestamp: TxTimestamp {
            seconds: timestamp.seconds,
            nanos: timestamp.nanos,
        },
        function: String::from_utf8(function)
            .map_err(|_| Status::invalid_argument("function name is not UTF-8"))?,
        argument: match argument {
            Some(argument) => argument,
            None if function_is_metadata => Vec::new(),
            None => {
                return Err(Status::invalid_argument(
                    "expected args [function, argument]",
                ))
            }
        },
        more,
        header,
        payload: proposal.payload,
    })
}

/// A Fabric 2.5-shaped failure with one `gateway.ErrorDetail`.
fn gateway_error(code: tonic::Code, message: &str, detail: &str) -> Status {
    let detail = prost_types::Any {
        type_url: "type.googleapis.com/gateway.ErrorDetail".into(),
        value: gateway::ErrorDetail {
            address: format!("{PEER_HOST}:7051"),
            msp_id: "Org1MSP".into(),
            message: detail.into(),
        }
        .encode_to_vec(),
    };
    let status = tonic_types::pb::Status {
        code: code as i32,
        message: message.into(),
        details: vec![detail],
    };
    Status::with_details(code, message, status.encode_to_vec().into())
}

fn validation_code(outcome: &Result<Vec<u8>, SubmitError>) -> peer::TxValidationCode {
    match outcome {
        Ok(_) => peer::TxValidationCode::Valid,
        Err(SubmitError::Mvcc {
            conflict: MvccConflict::ReadConflict { .. },
            ..
        }) => peer::TxValidationCode::MvccReadConflict,
        Err(SubmitError::Mvcc {
            conflict: MvccConflict::PhantomRead { .. },
            ..
        }) => peer::TxValidationCode::PhantomReadConflict,
        Err(SubmitError::DuplicateTxId(_)) => peer::TxValidationCode::DuplicateTxid,
        Err(_) => peer::TxValidationCode::InvalidOtherReason,
    }
}

impl TestPeer {
    fn new() -> Arc<TestPeer> {
        let endorsers = ["org1", "org2"]
            .into_iter()
            .map(|org| {
                let o = tom_fixtures::org(org);
                let issued = tom_fixtures::pki::issue_identity(
                    &o.ca(),
                    &format!("peer0.{org}.example.com"),
                    Some("peer"),
                    None,
                    (2024, 1, 1),
                    (2099, 12, 31),
                )
                .unwrap();
                let serialized = msp::SerializedIdentity {
                    mspid: o.msp_id.into(),
                    id_bytes: issued.cert_pem.into_bytes(),
                }
                .encode_to_vec();
                (serialized, issued.key_pkcs8_pem)
            })
            .collect();
        Arc::new(TestPeer {
            state: Mutex::new(PeerState::default()),
            batch_size: AtomicUsize::new(1),
            endorsers,
            height: watch::channel(0).0,
            live_blocks: broadcast::channel(64).0,
            streams_opened: watch::channel(0).0,
            reset_streams: broadcast::channel(4).0,
            refuse_streams: AtomicBool::new(false),
        })
    }

    fn count(&self, call: &'static str) {
        *self.state.lock().unwrap().calls.entry(call).or_default() += 1;
    }

    fn calls(&self, call: &'static str) -> usize {
        self.state
            .lock()
            .unwrap()
            .calls
            .get(call)
            .copied()
            .unwrap_or(0)
    }

    fn status_of(&self, tx_id: &str) -> Option<(i32, u64)> {
        self.state.lock().unwrap().statuses.get(tx_id).copied()
    }

    /// The prepared transaction for an endorsed proposal, as Fabric's Gateway assembles it: the
    /// proposal's header, one action whose payload carries the proposal payload and the
    /// proposal-response payload signed by one peer of each organisation.
    fn prepare(&self, proposal: &Proposal, endorsed: &Endorsed) -> Vec<u8> {
        let chaincode_id = peer::ChaincodeId {
            name: CHAINCODE.into(),
            ..Default::default()
        };
        let event = endorsed.rwset.event.as_ref().map(|e| {
            peer::ChaincodeEvent {
                chaincode_id: CHAINCODE.into(),
                tx_id: proposal.tx_id.clone(),
                event_name: e.name.clone(),
                payload: e.payload.clone(),
            }
            .encode_to_vec()
        });
        let action = peer::ChaincodeAction {
            results: Vec::new(),
            events: event.unwrap_or_default(),
            response: Some(peer::Response {
                status: 200,
                message: String::new(),
                payload: endorsed.response.clone(),
            }),
            chaincode_id: Some(chaincode_id),
        };
        let header_bytes = proposal.header.encode_to_vec();
        let response_payload = peer::ProposalResponsePayload {
            proposal_hash: sha256(&[&header_bytes, &proposal.payload]),
            extension: action.encode_to_vec(),
        }
        .encode_to_vec();
        let endorsements = self
            .endorsers
            .iter()
            .map(|(endorser, key)| {
                let message = [response_payload.as_slice(), endorser.as_slice()].concat();
                peer::Endorsement {
                    endorser: endorser.clone(),
                    signature: tom_fixtures::pki::sign_p256(key, &message).unwrap(),
                }
            })
            .collect();
        let action_payload = peer::ChaincodeActionPayload {
            chaincode_proposal_payload: proposal.payload.clone(),
            action: Some(peer::ChaincodeEndorsedAction {
                proposal_response_payload: response_payload,
                endorsements,
            }),
        };
        let transaction = peer::Transaction {
            actions: vec![peer::TransactionAction {
                header: proposal.header.signature_header.clone(),
                payload: action_payload.encode_to_vec(),
            }],
        };
        common::Payload {
            header: Some(proposal.header.clone()),
            data: transaction.encode_to_vec(),
        }
        .encode_to_vec()
    }

    /// Commits the queued transactions as one block (the orderer's cut and every peer's commit).
    fn cut_block(&self, state: &mut PeerState) {
        let queued: Vec<Endorsed> = state.queue.drain(..).collect();
        let tx_ids: Vec<String> = queued.iter().map(|t| t.tx_id.clone()).collect();
        let events_before = state.ledger.events().len();
        let outcomes = state.ledger.commit_block(queued);
        let number = state.ledger.height();
        let mut envelopes = Vec::new();
        let mut codes = Vec::new();
        for (tx_id, outcome) in tx_ids.iter().zip(&outcomes) {
            let code = validation_code(outcome);
            state.statuses.insert(tx_id.clone(), (code as i32, number));
            envelopes.push(state.envelopes.remove(tx_id).unwrap_or_default());
            codes.push(code as u8);
        }
        let events = state.ledger.events()[events_before..]
            .iter()
            .map(|e| peer::ChaincodeEvent {
                chaincode_id: CHAINCODE.into(),
                tx_id: e.tx_id.clone(),
                event_name: e.event.name.clone(),
                payload: e.event.payload.clone(),
            })
            .collect();
        let block = Block {
            number,
            events,
            envelopes,
            codes,
        };
        state.blocks.push(block.clone());
        let _ = self.live_blocks.send(block);
        self.height.send_replace(number);
    }
}

/// The gRPC service: a handle on the shared peer (the tests keep another).
struct PeerService(Arc<TestPeer>);

impl std::ops::Deref for PeerService {
    type Target = TestPeer;
    fn deref(&self) -> &TestPeer {
        &self.0
    }
}

#[tonic::async_trait]
impl Gateway for PeerService {
    async fn endorse(
        &self,
        request: Request<gateway::EndorseRequest>,
    ) -> Result<Response<gateway::EndorseResponse>, Status> {
        self.count("endorse");
        let request = request.into_inner();
        let proposal = check_proposal(
            request.proposed_transaction.as_ref(),
            &request.transaction_id,
            &request.channel_id,
        )?;
        if proposal.chaincode != CHAINCODE {
            return Err(Status::permission_denied(
                "system chaincodes are not endorsed here",
            ));
        }
        let mut state = self.state.lock().unwrap();
        let endorsed = state
            .ledger
            .endorse(
                &proposal.creator,
                &proposal.tx_id,
                proposal.timestamp,
                &proposal.function,
                &[&proposal.argument],
            )
            .map_err(|e| {
                gateway_error(
                    tonic::Code::Aborted,
                    "failed to endorse transaction, see attached details for more info",
                    &format!("chaincode response {}, {e}", e.status()),
                )
            })?;
        let payload = self.prepare(&proposal, &endorsed);
        state
            .endorsed
            .insert(proposal.tx_id.clone(), (endorsed, payload.clone()));
        Ok(Response::new(gateway::EndorseResponse {
            prepared_transaction: Some(common::Envelope {
                payload,
                signature: Vec::new(),
            }),
        }))
    }

    async fn submit(
        &self,
        request: Request<gateway::SubmitRequest>,
    ) -> Result<Response<gateway::SubmitResponse>, Status> {
        self.count("submit");
        let request = request.into_inner();
        let envelope = request
            .prepared_transaction
            .ok_or_else(|| Status::invalid_argument("a prepared transaction is required"))?;
        let payload = common::Payload::decode(envelope.payload.as_slice())
            .map_err(invalid("envelope payload"))?;
        let header = payload
            .header
            .ok_or_else(|| Status::invalid_argument("envelope payload has no header"))?;
        let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice())
            .map_err(invalid("channel header"))?;
        let signature_header = common::SignatureHeader::decode(header.signature_header.as_slice())
            .map_err(invalid("signature header"))?;
        verify(
            &signature_header.creator,
            &envelope.payload,
            &envelope.signature,
        )?;
        if channel_header.tx_id != request.transaction_id || request.channel_id != CHANNEL {
            return Err(Status::invalid_argument(
                "submit request does not match its envelope",
            ));
        }
        // Every endorsement in the envelope must verify against its endorser.
        let transaction =
            peer::Transaction::decode(payload.data.as_slice()).map_err(invalid("transaction"))?;
        for action in &transaction.actions {
            let action_payload = peer::ChaincodeActionPayload::decode(action.payload.as_slice())
                .map_err(invalid("action"))?;
            let endorsed = action_payload
                .action
                .ok_or_else(|| Status::invalid_argument("no endorsed action"))?;
            if endorsed.endorsements.len() != 2 {
                return Err(Status::invalid_argument(
                    "the policy needs both organisations' endorsements",
                ));
            }
            for e in &endorsed.endorsements {
                verify(
                    &e.endorser,
                    &[
                        endorsed.proposal_response_payload.as_slice(),
                        e.endorser.as_slice(),
                    ]
                    .concat(),
                    &e.signature,
                )?;
            }
        }
        let mut state = self.state.lock().unwrap();
        let (endorsed, handed_out) =
            state
                .endorsed
                .remove(&request.transaction_id)
                .ok_or_else(|| {
                    Status::failed_precondition(format!(
                        "transaction {} was never endorsed",
                        request.transaction_id
                    ))
                })?;
        if handed_out != envelope.payload {
            return Err(Status::invalid_argument(
                "the envelope payload differs from the prepared transaction",
            ));
        }
        state
            .envelopes
            .insert(request.transaction_id.clone(), envelope.encode_to_vec());
        state.queue.push(endorsed);
        if state.queue.len() >= self.batch_size.load(Ordering::SeqCst) {
            self.cut_block(&mut state);
        }
        Ok(Response::new(gateway::SubmitResponse {}))
    }

    async fn commit_status(
        &self,
        request: Request<gateway::SignedCommitStatusRequest>,
    ) -> Result<Response<gateway::CommitStatusResponse>, Status> {
        self.count("commit_status");
        let signed = request.into_inner();
        let request = gateway::CommitStatusRequest::decode(signed.request.as_slice())
            .map_err(invalid("commit status request"))?;
        verify(&request.identity, &signed.request, &signed.signature)?;
        if request.channel_id != CHANNEL {
            return Err(Status::not_found("channel not found"));
        }
        let mut height = self.height.subscribe();
        loop {
            if let Some((result, block_number)) = self.status_of(&request.transaction_id) {
                return Ok(Response::new(gateway::CommitStatusResponse {
                    result,
                    block_number,
                }));
            }
            height
                .changed()
                .await
                .map_err(|_| Status::unavailable("peer shutting down"))?;
        }
    }

    async fn evaluate(
        &self,
        request: Request<gateway::EvaluateRequest>,
    ) -> Result<Response<gateway::EvaluateResponse>, Status> {
        let request = request.into_inner();
        let proposal = check_proposal(
            request.proposed_transaction.as_ref(),
            &request.transaction_id,
            &request.channel_id,
        );
        self.count(match &proposal {
            Ok(p) if p.chaincode == QSCC => "qscc",
            Ok(p) if p.function == METADATA => "probe",
            _ => "evaluate",
        });
        let proposal = proposal?;
        if proposal.function == METADATA {
            return Ok(Response::new(gateway::EvaluateResponse {
                result: Some(peer::Response {
                    status: 200,
                    message: String::new(),
                    payload: br#"{"contracts":{}}"#.to_vec(),
                }),
            }));
        }
        let state = self.state.lock().unwrap();
        if proposal.chaincode == QSCC {
            // qscc GetChainInfo <channel>: the height is the number of the next block (block 0,
            // the genesis block, is implicit here). GetBlockByNumber <channel> <n>: the block
            // with the envelopes as submitted and their codes as its TRANSACTIONS_FILTER.
            let payload = match (proposal.function.as_str(), &proposal.more[..]) {
                ("GetChainInfo", []) if proposal.argument == CHANNEL.as_bytes() => {
                    common::BlockchainInfo {
                        height: state.ledger.height() + 1,
                        ..Default::default()
                    }
                    .encode_to_vec()
                }
                ("GetBlockByNumber", [number]) if proposal.argument == CHANNEL.as_bytes() => {
                    let number: u64 = std::str::from_utf8(number)
                        .ok()
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| Status::invalid_argument("block number"))?;
                    let block = state.blocks.iter().find(|b| b.number == number);
                    if number > 0 && block.is_none() {
                        return Ok(Response::new(gateway::EvaluateResponse {
                            result: Some(peer::Response {
                                status: 500,
                                message: format!("Failed to get block number {number}"),
                                payload: Vec::new(),
                            }),
                        }));
                    }
                    common::Block {
                        header: Some(common::BlockHeader {
                            number,
                            ..Default::default()
                        }),
                        data: Some(common::BlockData {
                            data: block.map(|b| b.envelopes.clone()).unwrap_or_default(),
                        }),
                        metadata: Some(common::BlockMetadata {
                            metadata: vec![
                                Vec::new(),
                                Vec::new(),
                                block.map(|b| b.codes.clone()).unwrap_or_default(),
                            ],
                        }),
                    }
                    .encode_to_vec()
                }
                _ => {
                    return Err(Status::unimplemented(
                        "only qscc GetChainInfo <channel> and GetBlockByNumber <channel> <n>",
                    ))
                }
            };
            return Ok(Response::new(gateway::EvaluateResponse {
                result: Some(peer::Response {
                    status: 200,
                    message: String::new(),
                    payload,
                }),
            }));
        }
        match state.ledger.evaluate(
            &proposal.creator,
            &proposal.tx_id,
            proposal.timestamp,
            &proposal.function,
            &[&proposal.argument],
        ) {
            Ok(payload) => Ok(Response::new(gateway::EvaluateResponse {
                result: Some(peer::Response {
                    status: 200,
                    message: String::new(),
                    payload,
                }),
            })),
            Err(e) => {
                let detail = format!("chaincode response {}, {e}", e.status());
                Err(gateway_error(
                    tonic::Code::Unknown,
                    &format!("evaluate call to endorser returned error: {detail}"),
                    &detail,
                ))
            }
        }
    }

    type ChaincodeEventsStream = ReceiverStream<Result<gateway::ChaincodeEventsResponse, Status>>;

    async fn chaincode_events(
        &self,
        request: Request<gateway::SignedChaincodeEventsRequest>,
    ) -> Result<Response<Self::ChaincodeEventsStream>, Status> {
        self.count("chaincode_events");
        let signed = request.into_inner();
        let request = gateway::ChaincodeEventsRequest::decode(signed.request.as_slice())
            .map_err(invalid("events request"))?;
        verify(&request.identity, &signed.request, &signed.signature)?;
        if request.channel_id != CHANNEL || request.chaincode_id != CHAINCODE {
            return Err(Status::not_found("channel or chaincode not found"));
        }
        if self.refuse_streams.load(Ordering::SeqCst) {
            return Err(Status::unavailable("peer restarting"));
        }
        // Subscribe before reading history so that no block falls between the two.
        let mut live = self.live_blocks.subscribe();
        let mut reset = self.reset_streams.subscribe();
        let (start, history) = {
            let state = self.state.lock().unwrap();
            let start = match request.start_position.and_then(|p| p.r#type) {
                Some(orderer::seek_position::Type::NextCommit(_)) => state.ledger.height() + 1,
                Some(orderer::seek_position::Type::Specified(s)) => s.number,
                other => {
                    return Err(Status::invalid_argument(format!(
                        "unsupported start position {other:?}"
                    )))
                }
            };
            (
                start,
                state
                    .blocks
                    .iter()
                    .filter(|b| b.number >= start)
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        };
        let after = request.after_transaction_id;
        self.streams_opened.send_modify(|n| *n += 1);
        let (sender, receiver) = mpsc::channel(16);
        tokio::spawn(async move {
            let batch = |block: Block| {
                let mut events = block.events;
                if block.number == start && !after.is_empty() {
                    if let Some(i) = events.iter().position(|e| e.tx_id == after) {
                        events.drain(..=i);
                    }
                }
                (!events.is_empty()).then_some(gateway::ChaincodeEventsResponse {
                    events,
                    block_number: block.number,
                })
            };
            let mut last = start.saturating_sub(1);
            for block in history {
                last = block.number;
                if let Some(response) = batch(block) {
                    if sender.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
            }
            loop {
                tokio::select! {
                    block = live.recv() => {
                        let Ok(block) = block else { return };
                        if block.number <= last { continue; }
                        last = block.number;
                        if let Some(response) = batch(block) {
                            if sender.send(Ok(response)).await.is_err() { return; }
                        }
                    }
                    _ = reset.recv() => {
                        let _ = sender.send(Err(Status::unavailable("stream reset by the test"))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

// ---------------------------------------------------------------------------------------------
// The test network: the peer behind TLS, and connection profiles for it.

/// A TLS CA and a server certificate for `PEER_HOST` (the only name in it).
struct Tls {
    ca_pem: String,
    server: TlsIdentity,
}

fn tls() -> Tls {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tlsca.org1.example.com");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![PEER_HOST.to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Tls {
        ca_pem: ca.pem(),
        server: TlsIdentity::from_pem(cert.pem(), key.serialize_pem()),
    }
}

struct Network {
    addr: SocketAddr,
    peer: Arc<TestPeer>,
    tls_ca_pem: String,
    tls_server: TlsIdentity,
    dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl Network {
    async fn start() -> Network {
        Network::serve(TestPeer::new(), tls()).await
    }

    /// Another peer of the same organisation: a second Gateway server over the same ledger
    /// (as two peers of one channel hold the same chain), with a TLS certificate of the same CA.
    async fn another_peer(&self) -> Network {
        Network::serve(
            self.peer.clone(),
            Tls {
                ca_pem: self.tls_ca_pem.clone(),
                server: self.tls_server.clone(),
            },
        )
        .await
    }

    async fn serve(peer: Arc<TestPeer>, tls: Tls) -> Network {
        let tls_server = tls.server.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let router = Server::builder()
            .tls_config(ServerTlsConfig::new().identity(tls.server))
            .unwrap()
            .add_service(GatewayServer::new(PeerService(peer.clone())));
        let server = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .unwrap();
        });
        Network {
            addr,
            peer,
            tls_ca_pem: tls.ca_pem,
            tls_server,
            dir: tempfile::tempdir().unwrap(),
            shutdown: Some(shutdown),
            server,
        }
    }

    /// Writes a profile (and the files it names) for `org/name` with the given TLS CA, and loads it.
    fn profile_with(
        &self,
        org: &str,
        name: &str,
        tls_ca_pem: &str,
        endpoint: &str,
    ) -> ConnectionProfile {
        let id = tom_fixtures::identity(org, name);
        let dir = self.dir.path();
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        std::fs::write(dir.join("tls/ca.pem"), tls_ca_pem).unwrap();
        std::fs::write(dir.join("cert.pem"), id.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), id.key_pkcs8_pem).unwrap();
        let profile = json!({
            "peer_endpoint": endpoint,
            "tls_ca_certificate": "tls/ca.pem",
            "tls_server_name": PEER_HOST,
            "msp_id": id.msp_id,
            "certificate": "cert.pem",
            "private_key": "key.pem",
            "channel": CHANNEL,
            "chaincode": CHAINCODE,
            "timeouts": { "connect_ms": 2000, "commit_status_ms": 10000 }
        });
        let path = dir.join("profile.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&profile).unwrap()).unwrap();
        ConnectionProfile::load(&path).unwrap()
    }

    /// A profile listing several peers (`peers`), in this order.
    fn profile_for_peers(&self, endpoints: &[String]) -> ConnectionProfile {
        let loaded = self.profile();
        let path = loaded.base_dir.join("profile.json");
        let mut json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let object = json.as_object_mut().unwrap();
        object.remove("peer_endpoint");
        object.insert("peers".into(), json!(endpoints));
        std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
        ConnectionProfile::load(&path).unwrap()
    }

    fn profile(&self) -> ConnectionProfile {
        self.profile_with(
            "org1",
            "orchestrator",
            &self.tls_ca_pem,
            &format!("https://{}", self.addr),
        )
    }

    async fn connect(&self) -> FabricLedger {
        FabricLedger::connect(&self.profile()).await.unwrap()
    }

    async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // Streams never end by themselves; closing them lets the graceful shutdown finish.
        let _ = self.peer.reset_streams.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.server).await;
        self.server.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Requests, built from the fixture identities.

fn signing(org: &str, name: &str) -> SigningIdentity {
    let id = tom_fixtures::identity(org, name);
    SigningIdentity::from_pem(id.msp_id, id.cert_pem, id.key_pkcs8_pem).unwrap()
}

fn register_org(org: &str) -> Vec<u8> {
    let o = tom_fixtures::org(org);
    serde_json::to_vec(
        &json!({ "msp_id": o.msp_id, "name": org, "ca_certificates": [o.ca_cert_pem] }),
    )
    .unwrap()
}

fn identify_device(device_id: &str, org: &str, name: &str, nonce: &str) -> Vec<u8> {
    let device = tom_fixtures::identity(org, name);
    let request = tom_contract::requests::IdentifyDevice::signed(
        device_id,
        device.msp_id,
        "sensor",
        device.cert_pem,
        nonce,
        tom_contract::simulation::DEFAULT_CHANNEL,
        |m| device.sign(m),
    )
    .unwrap();
    serde_json::to_vec(&request).unwrap()
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

async fn next_event(
    events: &mut broadcast::Receiver<tom_gateway::ledger::CommittedEvent>,
) -> tom_gateway::ledger::CommittedEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("no event within 10 s")
        .unwrap()
}

async fn run(
    ledger: &dyn Ledger,
    who: &SigningIdentity,
    function: &str,
    argument: &[u8],
    submit: bool,
) -> Result<Vec<u8>, LedgerError> {
    if submit {
        ledger
            .submit(who, function, argument)
            .await
            .map(|s| s.response)
    } else {
        ledger.evaluate(who, function, argument).await
    }
}

async fn wait_for_streams(peer: &TestPeer, at_least: usize) {
    let mut opened = peer.streams_opened.subscribe();
    tokio::time::timeout(Duration::from_secs(10), opened.wait_for(|n| *n >= at_least))
        .await
        .expect("the client never opened the event stream")
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn submit_and_evaluate_run_the_contract_over_signed_fabric_messages() {
    let network = Network::start().await;
    let ledger = network.connect().await;
    assert!(
        ledger.describe().contains(&network.addr.to_string()),
        "{}",
        ledger.describe()
    );

    let admin = signing("org1", "admin");
    let registered = ledger
        .submit(&admin, "RegisterOrg", &register_org("org1"))
        .await
        .unwrap();
    assert_eq!(registered.tx_id.len(), 64);
    assert_eq!(registered.block, 1);
    assert_eq!(
        network.peer.status_of(&registered.tx_id),
        Some((peer::TxValidationCode::Valid as i32, 1))
    );
    assert_eq!(
        parse(&registered.response)["kind"],
        "ORG",
        "{}",
        parse(&registered.response)
    );

    let orchestrator = signing("org1", "orchestrator");
    let identified = ledger
        .submit(
            &orchestrator,
            "IdentifyDevice",
            &identify_device("tl-1", "org1", "traffic-light-1", "n-1"),
        )
        .await
        .unwrap();
    assert_eq!(identified.block, 2);
    assert_ne!(identified.tx_id, registered.tx_id);

    let org = parse(
        &ledger
            .evaluate(&orchestrator, "GetOrg", br#"{"id":"Org1MSP"}"#)
            .await
            .unwrap(),
    );
    assert_eq!(org["msp_id"], "Org1MSP", "{org}");
    let auditor = signing("org1", "auditor");
    let device = parse(
        &ledger
            .evaluate(&auditor, "GetEntity", br#"{"id":"tl-1"}"#)
            .await
            .unwrap(),
    );
    assert_eq!(device["id"], "tl-1", "{device}");

    // Every call went through the peer (and passed its checks): one Endorse, Submit and
    // CommitStatus per transaction, one Evaluate per query.
    let calls = ["endorse", "submit", "commit_status", "evaluate"].map(|c| network.peer.calls(c));
    assert_eq!(calls, [2, 2, 2, 2]);
    network.stop().await;
}

#[tokio::test]
async fn a_refused_transaction_keeps_the_contracts_status_and_message() {
    let network = Network::start().await;
    let fabric = network.connect().await;
    let memory = InMemoryLedger::new();
    let admin = signing("org1", "admin");
    let orchestrator = signing("org1", "orchestrator");
    for ledger in [&fabric as &dyn Ledger, &memory] {
        ledger
            .submit(&admin, "RegisterOrg", &register_org("org1"))
            .await
            .unwrap();
    }

    // The same refusals on Fabric as on the in-memory ledger: same status, same message.
    let unknown_org = br#"{"id":"Org9MSP"}"#.as_slice();
    let cases: [(&SigningIdentity, &str, Vec<u8>, bool, u16); 4] = [
        (&orchestrator, "GetOrg", unknown_org.to_vec(), false, 404),
        (
            &orchestrator,
            "RegisterOrg",
            register_org("org2"),
            true,
            403,
        ),
        (
            &orchestrator,
            "IdentifyDevice",
            b"{\"device_id\":1}".to_vec(),
            true,
            400,
        ),
        (&orchestrator, "NoSuchFunction", b"{}".to_vec(), false, 400),
    ];
    for (who, function, argument, submit, status) in cases {
        let on_fabric = run(&fabric, who, function, &argument, submit)
            .await
            .unwrap_err();
        let in_memory = run(&memory, who, function, &argument, submit)
            .await
            .unwrap_err();
        assert_eq!(on_fabric, in_memory, "{function}");
        assert!(
            matches!(on_fabric, LedgerError::Rejected { status: s, .. } if s == status),
            "{function}: {on_fabric:?}"
        );
    }
    // Nothing was committed by the refused submissions.
    assert_eq!(network.peer.state.lock().unwrap().ledger.height(), 1);
    network.stop().await;
}

#[tokio::test]
async fn an_invalidated_transaction_is_a_conflict_named_by_its_validation_code() {
    let network = Network::start().await;
    let ledger = network.connect().await;
    ledger
        .submit(
            &signing("org1", "admin"),
            "RegisterOrg",
            &register_org("org1"),
        )
        .await
        .unwrap();

    // Two registrations of Org2MSP endorsed against the same state and ordered into one block:
    // the second read a key the first wrote, so Fabric's validator invalidates it.
    network.peer.batch_size.store(2, Ordering::SeqCst);
    let admin2 = signing("org2", "admin");
    let argument = register_org("org2");
    let (a, b) = tokio::join!(
        ledger.submit(&admin2, "RegisterOrg", &argument),
        ledger.submit(&admin2, "RegisterOrg", &argument)
    );
    let (committed, conflict) = match (a, b) {
        (Ok(s), Err(e)) | (Err(e), Ok(s)) => (s, e),
        other => panic!("expected one commit and one conflict, got {other:?}"),
    };
    assert_eq!(committed.block, 2);
    let LedgerError::Conflict { tx_id, reason } = conflict else {
        panic!("expected a conflict, got {conflict:?}")
    };
    assert_eq!(reason, "MVCC_READ_CONFLICT");
    assert_eq!(
        network.peer.status_of(&tx_id),
        Some((peer::TxValidationCode::MvccReadConflict as i32, 2))
    );
    network.stop().await;
}

#[tokio::test]
async fn an_unreachable_peer_is_unavailable() {
    // A port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let network = Network::start().await;
    let nowhere = network.profile_with(
        "org1",
        "orchestrator",
        &network.tls_ca_pem,
        &format!("https://127.0.0.1:{port}"),
    );
    match FabricLedger::connect(&nowhere).await {
        Err(LedgerError::Unavailable(message)) => {
            assert!(message.contains(&port.to_string()), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }

    // A peer that goes away after the connection was made.
    let ledger = network.connect().await;
    ledger
        .submit(
            &signing("org1", "admin"),
            "RegisterOrg",
            &register_org("org1"),
        )
        .await
        .unwrap();
    network.stop().await;
    match ledger
        .evaluate(
            &signing("org1", "auditor"),
            "GetOrg",
            br#"{"id":"Org1MSP"}"#,
        )
        .await
    {
        Err(LedgerError::Unavailable(message)) => {
            assert!(message.contains("evaluate GetOrg"), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn tls_with_the_wrong_ca_is_refused() {
    let network = Network::start().await;
    let other_ca = tls().ca_pem;
    let profile = network.profile_with(
        "org1",
        "orchestrator",
        &other_ca,
        &format!("https://{}", network.addr),
    );
    match FabricLedger::connect(&profile).await {
        Err(LedgerError::Unavailable(message)) => {
            assert!(
                message.to_lowercase().contains("certificate"),
                "the error should say the certificate is not trusted: {message}"
            )
        }
        other => panic!("expected the TLS handshake to fail, got {other:?}"),
    }
    // Plain-text gRPC to a TLS peer does not work either.
    let plain = network.profile_with(
        "org1",
        "orchestrator",
        &network.tls_ca_pem,
        &format!("http://{}", network.addr),
    );
    let refused = match FabricLedger::connect(&plain).await {
        Err(e) => e,
        Ok(ledger) => ledger
            .evaluate(&signing("org1", "auditor"), "GetOrg", b"{}")
            .await
            .unwrap_err(),
    };
    assert!(
        matches!(
            refused,
            LedgerError::Unavailable(_) | LedgerError::Internal(_)
        ),
        "{refused:?}"
    );
    assert_eq!(network.peer.calls("evaluate"), 0);
    network.stop().await;
}

#[tokio::test]
async fn committed_events_reach_subscribers_once_even_across_a_broken_stream() {
    let network = Network::start().await;
    let ledger = network.connect().await;
    let mut events = ledger.subscribe();
    wait_for_streams(&network.peer, 1).await;
    assert_eq!(
        network.peer.calls("qscc"),
        1,
        "the stream is anchored at the channel height"
    );

    // The stream breaks before any event and the peer refuses new ones while a transaction
    // commits: the client resumes from the height it anchored at, so the event is not lost.
    let attempts = network.peer.calls("chaincode_events");
    network.peer.refuse_streams.store(true, Ordering::SeqCst);
    network.peer.reset_streams.send(()).unwrap();
    let registered = ledger
        .submit(
            &signing("org1", "admin"),
            "RegisterOrg",
            &register_org("org1"),
        )
        .await
        .unwrap();
    // The client has tried again (and been refused) after the commit's block was cut.
    wait::until_true(
        "the client to retry the refused event stream",
        Duration::from_secs(10),
        || async { network.peer.calls("chaincode_events") > attempts },
    )
    .await;
    network.peer.refuse_streams.store(false, Ordering::SeqCst);
    let event = next_event(&mut events).await;
    assert_eq!(
        (event.tx_id.as_str(), event.block, event.name.as_str()),
        (registered.tx_id.as_str(), 1, "ORG")
    );
    assert!(!event.payload.is_empty());

    // The stream breaks and the peer refuses new ones for a while; two transactions commit
    // meanwhile. The client must resume after the last event it saw: both new events, once.
    network.peer.refuse_streams.store(true, Ordering::SeqCst);
    network.peer.reset_streams.send(()).unwrap();
    let orchestrator = signing("org1", "orchestrator");
    let first = ledger
        .submit(
            &orchestrator,
            "IdentifyDevice",
            &identify_device("tl-1", "org1", "traffic-light-1", "n-1"),
        )
        .await
        .unwrap();
    let second = ledger
        .submit(
            &orchestrator,
            "IdentifyDevice",
            &identify_device("gw-1", "org1", "roadside-gateway-1", "n-2"),
        )
        .await
        .unwrap();
    wait::until_true(
        "the client to retry the refused stream",
        Duration::from_secs(10),
        || async { network.peer.calls("chaincode_events") >= 2 },
    )
    .await;
    network.peer.refuse_streams.store(false, Ordering::SeqCst);

    let resumed = [next_event(&mut events).await, next_event(&mut events).await];
    assert_eq!(
        resumed.map(|e| (e.tx_id, e.block, e.name)),
        [
            (first.tx_id, first.block, "PROV-ID-create".to_string()),
            (second.tx_id, second.block, "PROV-ID-create".to_string())
        ]
    );
    // No event may be delivered twice: events arrive in commit order, so if the next one is
    // the event of a transaction committed after these two, none was repeated before it.
    let marker = ledger
        .submit(
            &orchestrator,
            "IdentifyDevice",
            &identify_device("cam-1", "org1", "edge-node-1", "n-3"),
        )
        .await
        .unwrap();
    let next = next_event(&mut events).await;
    assert_eq!(
        (next.tx_id.as_str(), next.name.as_str()),
        (marker.tx_id.as_str(), "PROV-ID-create"),
        "no event may be delivered twice"
    );
    network.stop().await;
}

#[test]
fn the_example_profile_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../network/connection-profile.example.json"
    );
    let profile = ConnectionProfile::load(path).unwrap();
    assert_eq!(
        (
            profile.msp_id.as_str(),
            profile.channel.as_str(),
            profile.chaincode.as_str()
        ),
        ("Org1MSP", "tom", "tom")
    );
    // Relative paths are resolved against the profile's directory.
    assert!(profile
        .resolve(profile.tls_ca_certificate.as_ref().unwrap())
        .starts_with(profile.base_dir.as_path()));
}

/// `cargo test` builds the examples; the Fabric smoke example must work against this gateway,
/// and run again on the same ledger (registering Org1MSP again updates it).
#[tokio::test]
async fn the_smoke_example_runs_against_the_test_gateway() {
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/fabric_smoke");
    assert!(
        example.exists(),
        "{} is missing: cargo test builds the examples",
        example.display()
    );
    let network = Network::start().await;
    let profile = network.profile();
    let profile_path = profile.base_dir.join("profile.json");
    for run in 0..2 {
        let output = tokio::process::Command::new(&example)
            .arg(&profile_path)
            .args(["--submits", "3"])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "run {run}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for line in [
            "RegisterOrg committed",
            "IdentifyDevice committed",
            "event PROV-ID-create",
            "submit latency over 3 transaction(s)",
        ] {
            assert!(
                stdout.contains(line),
                "run {run} should print {line:?}:\n{stdout}"
            );
        }
    }
    assert_eq!(network.peer.state.lock().unwrap().ledger.height(), 8);
    network.stop().await;
}

#[tokio::test]
async fn a_commit_that_never_comes_is_unavailable_after_the_commit_status_timeout() {
    let network = Network::start().await;
    let mut profile = network.profile();
    profile.timeouts.commit_status_ms = 300;
    let ledger = FabricLedger::connect(&profile).await.unwrap();
    // The orderer waits for a second transaction that never comes.
    network.peer.batch_size.store(2, Ordering::SeqCst);
    let started = std::time::Instant::now();
    match ledger
        .submit(
            &signing("org1", "admin"),
            "RegisterOrg",
            &register_org("org1"),
        )
        .await
    {
        Err(LedgerError::OutcomeUnknown { tx_id, reason }) => {
            assert!(reason.contains("no commit status within"), "{reason}");
            // The transaction the caller must ask about is the one the orderer holds.
            let state = network.peer.state.lock().unwrap();
            assert_eq!(state.queue.len(), 1);
            assert_eq!(state.queue[0].tx_id, tx_id);
        }
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(network.peer.calls("submit"), 1);
    network.stop().await;
}

/// The test peer itself must refuse what a Fabric peer refuses, or the tests above prove
/// nothing: a high-S signature, a signature by someone else, a transaction id not derived
/// from nonce and creator.
#[tokio::test]
async fn the_test_peer_refuses_what_a_fabric_peer_refuses() {
    use tom_gateway::ledger::fabric::proposal;
    let network = Network::start().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", network.addr))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&network.tls_ca_pem))
                .domain_name(PEER_HOST),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = gateway::gateway_client::GatewayClient::new(channel);
    let auditor = signing("org1", "auditor");
    let evaluate = |signed: proposal::SignedProposal| gateway::EvaluateRequest {
        transaction_id: signed.tx_id,
        channel_id: CHANNEL.into(),
        proposed_transaction: Some(signed.proposal),
        target_organizations: vec![],
    };
    let fresh = || {
        proposal::signed_proposal(
            &auditor,
            CHANNEL,
            CHAINCODE,
            "GetOrg",
            br#"{"id":"Org1MSP"}"#,
            &proposal::new_nonce(&tom_gateway::clock::SystemTxIds::default()).unwrap(),
            proposal::timestamp(&tom_gateway::clock::SystemClock),
        )
    };

    // The same signature with S replaced by n - S: valid ECDSA, but not low-S.
    let mut high_s = fresh();
    let signature = p256::ecdsa::Signature::from_der(&high_s.proposal.signature).unwrap();
    let (r, s) = signature.split_scalars();
    let flipped = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
    high_s.proposal.signature = flipped.to_der().as_bytes().to_vec();
    let status = client.evaluate(evaluate(high_s)).await.unwrap_err();
    assert!(status.message().contains("not low-S"), "{status:?}");

    let mut foreign = fresh();
    foreign.proposal.signature = signing("org2", "auditor").sign(&foreign.proposal.proposal_bytes);
    let status = client.evaluate(evaluate(foreign)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    let mut wrong_id = fresh();
    wrong_id.tx_id = hex::encode([0u8; 32]);
    let status = client.evaluate(evaluate(wrong_id)).await.unwrap_err();
    assert!(
        status.message().contains("is not sha256(nonce ‖ creator)"),
        "{status:?}"
    );

    // And accepts the real thing (Org1MSP is not registered yet: the contract answers 404).
    let status = client.evaluate(evaluate(fresh())).await.unwrap_err();
    assert!(
        status.message().contains("chaincode response 404"),
        "{status:?}"
    );
    assert_eq!(network.peer.calls("evaluate"), 4);
    network.stop().await;
}

async fn eventually_ready(ledger: &FabricLedger, ready: bool) -> String {
    for _ in 0..100 {
        let readiness = ledger.readiness();
        if readiness.ready == ready {
            return readiness.detail;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("readiness never became {ready}: {:?}", ledger.readiness());
}

#[tokio::test]
async fn readiness_follows_the_peer_and_the_chaincode() {
    let network = Network::start().await;
    let ledger = network.connect().await;
    let detail = eventually_ready(&ledger, true).await;
    assert!(detail.contains(&network.addr.to_string()), "{detail}");
    assert!(network.peer.calls("probe") >= 1);
    let addr = network.addr.to_string();
    network.stop().await;
    let detail = eventually_ready(&ledger, false).await;
    assert!(
        detail.contains("no Fabric peer answers") && detail.contains(&addr),
        "{detail}"
    );
    assert!(
        ledger
            .metrics()
            .contains(&format!("tom_fabric_peer_up{{peer=\"{addr}\"}} 0")),
        "{}",
        ledger.metrics()
    );
}

#[tokio::test]
async fn two_peers_of_the_organisation_fail_over_for_reads_writes_and_events_with_no_event_lost_or_repeated(
) {
    let first = Network::start().await;
    let second = first.another_peer().await;
    let (a, b) = (first.addr.to_string(), second.addr.to_string());
    let profile = first.profile_for_peers(&[format!("https://{a}"), format!("https://{b}")]);
    let ledger = FabricLedger::connect(&profile).await.unwrap();
    assert!(ledger.describe().contains(&a) && ledger.describe().contains(&b));
    let mut events = ledger.subscribe();
    wait_for_streams(&first.peer, 1).await;

    let registered = ledger
        .submit(
            &signing("org1", "admin"),
            "RegisterOrg",
            &register_org("org1"),
        )
        .await
        .unwrap();
    let metrics = ledger.metrics();
    assert!(
        metrics.contains(&format!(
            "tom_fabric_peer_calls_total{{peer=\"{a}\",call=\"endorse\",result=\"ok\"}} 1"
        )),
        "the first peer answers while it is up:\n{metrics}"
    );
    assert!(metrics.contains(&format!("tom_fabric_event_stream_peer{{peer=\"{a}\"}} 1")));

    // The first peer stops (its event stream breaks with it): writes, reads and events go on
    // through the second.
    let streams_before = first.peer.calls("chaincode_events");
    first.stop().await;
    let orchestrator = signing("org1", "orchestrator");
    let device = ledger
        .submit(
            &orchestrator,
            "IdentifyDevice",
            &identify_device("tl-1", "org1", "traffic-light-1", "n-1"),
        )
        .await
        .expect("the write fails over to the second peer");
    let org = ledger
        .evaluate(
            &signing("org1", "auditor"),
            "GetOrg",
            br#"{"id":"Org1MSP"}"#,
        )
        .await
        .expect("the read goes to the second peer");
    assert_eq!(parse(&org)["msp_id"], "Org1MSP");
    let metrics = ledger.metrics();
    for line in [
        format!(
            "tom_fabric_peer_calls_total{{peer=\"{a}\",call=\"endorse\",result=\"unavailable\"}} 1"
        ),
        format!("tom_fabric_peer_calls_total{{peer=\"{b}\",call=\"endorse\",result=\"ok\"}} 1"),
        format!("tom_fabric_peer_calls_total{{peer=\"{b}\",call=\"evaluate\",result=\"ok\"}}"),
        "tom_fabric_failovers_total{call=\"endorse\"} 1".to_string(),
        format!("tom_fabric_preferred_peer{{peer=\"{b}\"}} 1"),
    ] {
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }
    // Once failed over, calls go to the second peer first: no second failover.
    ledger
        .submit(
            &orchestrator,
            "IdentifyDevice",
            &identify_device("gw-1", "org1", "roadside-gateway-1", "n-2"),
        )
        .await
        .unwrap();
    assert!(ledger
        .metrics()
        .contains("tom_fabric_failovers_total{call=\"endorse\"} 1\n"));

    let received: Vec<_> = [
        next_event(&mut events).await,
        next_event(&mut events).await,
        next_event(&mut events).await,
    ]
    .into_iter()
    .map(|e| (e.tx_id, e.block))
    .collect();
    assert_eq!(received[0], (registered.tx_id.clone(), registered.block));
    assert_eq!(received[1], (device.tx_id.clone(), device.block));
    assert_eq!(received[2].1, device.block + 1);
    // No event may be delivered twice: events arrive in commit order, so if the next one is
    // the event of a transaction committed after these two, none was repeated before it.
    let marker = ledger
        .submit(
            &orchestrator,
            "IdentifyDevice",
            &identify_device("cam-1", "org1", "edge-node-1", "n-3"),
        )
        .await
        .unwrap();
    let next = next_event(&mut events).await;
    assert_eq!(
        (next.tx_id.as_str(), next.name.as_str()),
        (marker.tx_id.as_str(), "PROV-ID-create"),
        "no event may be delivered twice"
    );
    assert!(
        second.peer.calls("chaincode_events") > streams_before,
        "the stream reopened (on the second peer)"
    );
    assert!(ledger
        .metrics()
        .contains(&format!("tom_fabric_event_stream_peer{{peer=\"{b}\"}} 1")));
    second.stop().await;
}

#[tokio::test]
async fn a_first_peer_down_at_start_is_skipped() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let network = Network::start().await;
    let profile = network.profile_for_peers(&[
        format!("https://127.0.0.1:{port}"),
        format!("https://{}", network.addr),
    ]);
    let ledger = FabricLedger::connect(&profile).await.unwrap();
    ledger
        .submit(
            &signing("org1", "admin"),
            "RegisterOrg",
            &register_org("org1"),
        )
        .await
        .unwrap();
    let metrics = ledger.metrics();
    assert!(
        !metrics.contains(&format!("peer=\"127.0.0.1:{port}\",call=\"endorse\"")),
        "the unreachable peer is not asked first:\n{metrics}"
    );
    let detail = eventually_ready(&ledger, true).await;
    assert!(
        detail.contains(&format!("not: 127.0.0.1:{port}")),
        "{detail}"
    );
    network.stop().await;
}

/// Issue 11: a `/v1/events` consumer resumes on Fabric: `replay_after(block, tx)` opens a
/// chaincode-event stream just after that transaction and returns every later event, in commit
/// order, once, then stops at the channel height.
#[tokio::test]
async fn events_replay_from_just_after_an_event() {
    let network = Network::start().await;
    let ledger = network.connect().await;
    let mut events = ledger.subscribe();
    wait_for_streams(&network.peer, 1).await;
    ledger
        .submit(
            &signing("org1", "admin"),
            "RegisterOrg",
            &register_org("org1"),
        )
        .await
        .unwrap();
    let orchestrator = signing("org1", "orchestrator");
    for (i, name) in ["traffic-light-1", "roadside-gateway-1", "edge-node-1"]
        .iter()
        .enumerate()
    {
        ledger
            .submit(
                &orchestrator,
                "IdentifyDevice",
                &identify_device(&format!("d-{i}"), "org1", name, &format!("n-{i}")),
            )
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next_event(&mut events).await);
    }
    let replayed = tokio::time::timeout(
        Duration::from_secs(10),
        ledger.replay_after(seen[0].block, &seen[0].tx_id),
    )
    .await
    .expect("the replay stops at the channel height")
    .unwrap();
    let ids = |e: &[tom_gateway::ledger::CommittedEvent]| {
        e.iter()
            .map(|e| (e.block, e.tx_id.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&replayed), ids(&seen[1..]));
    // After the newest event there is nothing to replay.
    let last = seen.last().unwrap();
    let none = tokio::time::timeout(
        Duration::from_secs(10),
        ledger.replay_after(last.block, &last.tx_id),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(none.is_empty(), "{none:?}");
    // A resume point whose transaction is not in that block (one of another block, or one
    // this channel never saw) is refused as on the embedded ledger (qscc GetBlockByNumber),
    // not replayed from the start of the block.
    let foreign = "cd".repeat(32);
    for (block, tx_id) in [
        (seen[1].block, seen[0].tx_id.as_str()),
        (seen[0].block, seen[1].tx_id.as_str()),
        (seen[0].block, foreign.as_str()),
    ] {
        let qscc_before = network.peer.calls("qscc");
        match ledger.replay_after(block, tx_id).await {
            Err(LedgerError::Rejected { status, message }) => {
                assert_eq!(status, 400, "{message}");
                let LedgerError::Rejected { message: want, .. } =
                    tom_gateway::ledger::no_committed_event(block, tx_id)
                else {
                    unreachable!()
                };
                assert_eq!(message, want);
            }
            other => panic!("resuming at {block}.{tx_id} was not refused: {other:?}"),
        }
        assert!(
            network.peer.calls("qscc") >= qscc_before + 2,
            "the height and the block come from qscc"
        );
    }
    network.stop().await;
}
