//! A peer-side test driver for `tom-chaincode`, written from Fabric's chaincode protocol: it
//! dials the chaincode as a peer does (the peer is the gRPC client of a CCaaS chaincode), runs
//! the REGISTER/REGISTERED/READY handshake, sends real signed proposals built from the fixture
//! identities, and answers the chaincode's state requests from a world state of its own with a
//! Fabric peer's semantics (`tom_contract::simulation::TxSimulator` over committed state:
//! reads see committed state only, writes are collected into a read-write set and committed
//! afterwards). Query iterators are served in small batches so that QUERY_STATE_NEXT is used.
#![allow(dead_code)] // each test binary uses a different part of the driver

pub mod proposal;
pub mod scenario;
pub mod tls;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fabric_shim_protos::peer::chaincode_client::ChaincodeClient;
use fabric_shim_protos::peer::chaincode_message::Type;
use fabric_shim_protos::peer::{
    ChaincodeEvent, ChaincodeId, ChaincodeMessage, DelState, GetHistoryForKey, GetState,
    GetStateByRange, PutState, QueryMetadata, QueryResponse, QueryResponseMetadata,
    QueryResultBytes, QueryStateClose, QueryStateNext, Response,
};
use fabric_shim_protos::queryresult;
use prost::Message;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tom_contract::ledger::LedgerStub;
use tom_contract::memory::{Endorsed, MemoryLedger, SubmitError};
use tom_contract::simulation::{ReadWriteSet, TxSimulator};
use tom_contract::Timestamp;
use tom_fixtures::Identity;
use tonic::transport::{Channel, Endpoint};

pub use proposal::{SignedTx, TxClock};

/// A package id of the right shape (`label:sha256`).
pub const CHAINCODE_ID: &str =
    "tom_0.1:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
pub const CHANNEL: &str = "tom";
/// How long the driver waits for any one message from the chaincode.
pub const WAIT: Duration = Duration::from_secs(20);

// --- the chaincode under test -------------------------------------------------------------------

/// The chaincode server running in this test process on a loopback port.
pub struct InProcess {
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), tom_chaincode::ChaincodeError>>,
}

impl InProcess {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Start with a configuration adjusted by `tweak` (e.g. to add TLS).
    pub async fn start_with(tweak: impl FnOnce(&mut tom_chaincode::Config)) -> Self {
        let mut config = tom_chaincode::Config::from_lookup(|name| match name {
            "CHAINCODE_ID" => Some(CHAINCODE_ID.into()),
            "CHAINCODE_SERVER_ADDRESS" => Some("127.0.0.1:0".into()),
            _ => None,
        })
        .unwrap();
        tweak(&mut config);
        let listener = tom_chaincode::bind(&config).await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(tom_chaincode::serve(config, listener, async {
            let _ = stopped.await;
        }));
        InProcess {
            address,
            stop: Some(stop),
            handle,
        }
    }

    pub async fn channel(&self) -> Channel {
        plain_channel(self.address).await
    }

    /// Stop the server and wait for `serve` to return.
    pub async fn shutdown(mut self) -> Result<(), tom_chaincode::ChaincodeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.handle).await.unwrap()
    }
}

pub async fn plain_channel(address: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The real `tom-chaincode` binary, started with `env` (plus RUST_LOG), its stderr collected.
pub struct Binary {
    pub child: Child,
    pub address: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Binary {
    /// Start the binary and wait until it logs the address it listens on.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tom-chaincode"));
        command
            .env_clear()
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .expect("cannot start the tom-chaincode binary");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found, address) = std::sync::mpsc::channel();
        let lines = log.clone();
        // The pipe must be drained for the whole life of the process, or its logging blocks.
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split("address=").nth(1) {
                    if line.contains("listening") {
                        let text = rest
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        let _ = found.send(text);
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let address = match address.recv_timeout(WAIT) {
            Ok(text) => text.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "tom-chaincode did not report its address; log: {:?}",
                    log.lock().unwrap()
                );
            }
        };
        Binary {
            child,
            address,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn signal(&self, signal: &str) {
        // The shell's builtin kill: no dependence on a procps/util-linux binary.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{signal} {}", self.child.id()))
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- a raw stream: the protocol by hand -------------------------------------------------------

/// One `Connect` stream with nothing on top, for handshake and violation tests.
pub struct RawStream {
    pub to_chaincode: mpsc::Sender<ChaincodeMessage>,
    pub from_chaincode: tonic::Streaming<ChaincodeMessage>,
}

impl RawStream {
    pub async fn open(channel: Channel) -> Result<Self, tonic::Status> {
        let (to_chaincode, outgoing) = mpsc::channel(64);
        let mut client = ChaincodeClient::new(channel);
        let from_chaincode = client
            .connect(ReceiverStream::new(outgoing))
            .await?
            .into_inner();
        Ok(RawStream {
            to_chaincode,
            from_chaincode,
        })
    }

    pub async fn send(&self, message: ChaincodeMessage) {
        self.to_chaincode
            .send(message)
            .await
            .expect("the stream to the chaincode is closed");
    }

    /// The next message, `None` when the chaincode ended the stream (OK or with a status).
    pub async fn next(&mut self) -> Result<Option<ChaincodeMessage>, tonic::Status> {
        tokio::time::timeout(WAIT, self.from_chaincode.message())
            .await
            .expect("no message from the chaincode in time")
    }

    pub async fn expect(&mut self, kind: Type) -> ChaincodeMessage {
        let message = self
            .next()
            .await
            .expect("stream failed")
            .expect("stream ended");
        assert_eq!(
            message.r#type,
            kind as i32,
            "expected {kind:?}, got {:?}: {message:?}",
            Type::try_from(message.r#type)
        );
        message
    }

    /// Expect REGISTER naming `chaincode_id`, then answer REGISTERED and READY.
    pub async fn handshake(&mut self, chaincode_id: &str) {
        let register = self.expect(Type::Register).await;
        let id = ChaincodeId::decode(register.payload.as_slice()).unwrap();
        assert_eq!(id.name, chaincode_id, "REGISTER must name the package id");
        self.send(message(Type::Registered, "", Vec::new())).await;
        self.send(message(Type::Ready, "", Vec::new())).await;
    }
}

pub fn message(kind: Type, tx_id: &str, payload: Vec<u8>) -> ChaincodeMessage {
    ChaincodeMessage {
        r#type: kind as i32,
        payload,
        txid: tx_id.to_owned(),
        channel_id: CHANNEL.to_owned(),
        ..Default::default()
    }
}

/// The TRANSACTION message a peer sends for `tx`.
pub fn transaction_message(tx: &SignedTx) -> ChaincodeMessage {
    ChaincodeMessage {
        r#type: Type::Transaction as i32,
        payload: tx.input.encode_to_vec(),
        txid: tx.tx_id.clone(),
        channel_id: tx.channel_id.clone(),
        proposal: Some(tx.signed.clone()),
        ..Default::default()
    }
}

// --- a peer ---------------------------------------------------------------------------------

/// How the driver peer behaves (all off: a well-behaved Fabric peer).
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Results per QueryResponse batch (a real peer cuts at 100; small here to exercise
    /// QUERY_STATE_NEXT).
    pub batch_size: usize,
    /// Answer GET_STATE of this key with ERROR.
    pub refuse_key: Option<String>,
    /// Send an undecodable result in the second batch of every iterator.
    pub corrupt_second_batch: bool,
    /// Wait this long before every answer (to interleave concurrent transactions).
    pub delay: Option<Duration>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            batch_size: 2,
            refuse_key: None,
            corrupt_second_batch: false,
            delay: None,
        }
    }
}

/// What one endorsement produced, as a peer sees it.
#[derive(Debug, Clone)]
pub struct Endorsement {
    pub tx_id: String,
    pub timestamp: Timestamp,
    /// COMPLETED or ERROR.
    pub kind: Type,
    /// The chaincode's Response (COMPLETED); for ERROR, status 0 and the error text as message.
    pub response: Response,
    pub event: Option<ChaincodeEvent>,
    pub rwset: ReadWriteSet,
    /// Every request the chaincode made, in order, with its arguments.
    pub requests: Vec<String>,
    /// Iterators the chaincode left open at completion.
    pub open_iterators: usize,
}

impl Endorsement {
    pub fn ok(&self) -> bool {
        self.kind == Type::Completed && self.response.status == 200
    }

    pub fn json(&self) -> Value {
        assert!(
            self.ok(),
            "transaction failed: {:?} {} {}",
            self.kind,
            self.response.status,
            self.response.message
        );
        serde_json::from_slice(&self.response.payload).unwrap()
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.requests
            .iter()
            .filter(|r| r.starts_with(prefix))
            .count()
    }
}

type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<ChaincodeMessage>>>>;

/// A driver peer on one stream: many transactions may be in flight on it at once.
pub struct Peer {
    pub name: String,
    to_chaincode: mpsc::Sender<ChaincodeMessage>,
    routes: Routes,
    /// Committed state; each endorsement simulates against the snapshot current when it began.
    pub ledger: Arc<Mutex<Arc<MemoryLedger>>>,
    /// Every message from the chaincode, in arrival order: (txid, type).
    pub trace: Arc<Mutex<Vec<(String, Type)>>>,
    /// Messages for no transaction in flight (e.g. KEEPALIVE echoes).
    pub unrouted: mpsc::UnboundedReceiver<ChaincodeMessage>,
    /// Resolves when the chaincode ends the stream: `Ok` or the status it ended with.
    pub ended: Option<oneshot::Receiver<Result<(), tonic::Status>>>,
    pub behaviour: Behaviour,
}

impl Peer {
    pub async fn connect(name: &str, channel: Channel) -> Peer {
        Self::connect_with(
            name,
            channel,
            Behaviour::default(),
            Arc::new(MemoryLedger::new()),
        )
        .await
    }

    pub async fn connect_with(
        name: &str,
        channel: Channel,
        behaviour: Behaviour,
        ledger: Arc<MemoryLedger>,
    ) -> Peer {
        let mut raw = RawStream::open(channel).await.expect("Connect failed");
        raw.handshake(CHAINCODE_ID).await;
        let RawStream {
            to_chaincode,
            mut from_chaincode,
        } = raw;
        let routes: Routes = Arc::default();
        let trace = Arc::new(Mutex::new(Vec::new()));
        let (unrouted_tx, unrouted) = mpsc::unbounded_channel();
        let (ended_tx, ended) = oneshot::channel();
        let (r, t) = (routes.clone(), trace.clone());
        // The stream's reader: every message goes to the transaction it names.
        tokio::spawn(async move {
            let end = loop {
                match from_chaincode.message().await {
                    Ok(Some(message)) => {
                        let kind = Type::try_from(message.r#type).unwrap_or(Type::Undefined);
                        t.lock().unwrap().push((message.txid.clone(), kind));
                        let route = r.lock().unwrap().get(&message.txid).cloned();
                        match route {
                            Some(route) => {
                                let _ = route.send(message);
                            }
                            None => {
                                let _ = unrouted_tx.send(message);
                            }
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(status) => break Err(status),
                }
            };
            // Wake every transaction still waiting on this stream.
            r.lock().unwrap().clear();
            let _ = ended_tx.send(end);
        });
        Peer {
            name: name.to_owned(),
            to_chaincode,
            routes,
            ledger: Arc::new(Mutex::new(ledger)),
            trace,
            unrouted,
            ended: Some(ended),
            behaviour,
        }
    }

    pub async fn send_raw(&self, message: ChaincodeMessage) {
        self.to_chaincode
            .send(message)
            .await
            .expect("stream closed");
    }

    /// Wait for the chaincode to end this stream.
    pub async fn ended(&mut self) -> Result<(), tonic::Status> {
        let ended = self.ended.take().expect("already awaited");
        tokio::time::timeout(WAIT, ended)
            .await
            .expect("the chaincode did not end the stream")
            .unwrap()
    }

    /// Send `tx` as TRANSACTION and serve the chaincode's requests until it completes.
    pub async fn endorse(&self, tx: &SignedTx) -> Endorsement {
        self.endorse_message(tx, transaction_message(tx)).await
    }

    /// Like [`Peer::endorse`] with a hand-made message for `tx` (e.g. a broken payload).
    pub async fn endorse_message(
        &self,
        tx: &SignedTx,
        transaction: ChaincodeMessage,
    ) -> Endorsement {
        let (route, mut inbox) = mpsc::unbounded_channel();
        assert!(
            self.routes
                .lock()
                .unwrap()
                .insert(tx.tx_id.clone(), route)
                .is_none(),
            "tx id reused"
        );
        let snapshot = self.ledger.lock().unwrap().clone();
        let mut sim = TxSimulator::new(
            &*snapshot,
            tx.tx_id.clone(),
            tx.timestamp,
            tx.creator.clone(),
        );
        let mut requests = Vec::new();
        let mut iterators: HashMap<String, Iter> = HashMap::new();
        let mut next_iterator = 0;
        self.send_raw(transaction).await;

        let (kind, response, event) = loop {
            let incoming = tokio::time::timeout(WAIT, inbox.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{}: no message from the chaincode for {}",
                        self.name, tx.tx_id
                    )
                });
            let Some(incoming) = incoming else {
                panic!("{}: the stream ended during {}", self.name, tx.tx_id)
            };
            let kind = Type::try_from(incoming.r#type).unwrap_or(Type::Undefined);
            if kind == Type::Completed {
                let response = Response::decode(incoming.payload.as_slice()).unwrap();
                break (kind, response, incoming.chaincode_event);
            }
            if kind == Type::Error {
                let text = String::from_utf8_lossy(&incoming.payload).into_owned();
                break (
                    kind,
                    Response {
                        status: 0,
                        message: text,
                        payload: Vec::new(),
                    },
                    None,
                );
            }
            assert_eq!(
                incoming.channel_id, tx.channel_id,
                "request on the wrong channel"
            );
            if let Some(delay) = self.behaviour.delay {
                tokio::time::sleep(delay).await;
            }
            let answer = self.serve_request(
                kind,
                &incoming.payload,
                &mut sim,
                &mut requests,
                &mut iterators,
                &mut next_iterator,
            );
            let (answer_kind, payload) = match answer {
                Ok(payload) => (Type::Response, payload),
                Err(text) => (Type::Error, text.into_bytes()),
            };
            let mut reply = message(answer_kind, &tx.tx_id, payload);
            reply.channel_id = tx.channel_id.clone();
            self.send_raw(reply).await;
        };
        self.routes.lock().unwrap().remove(&tx.tx_id);
        if let Some(event) = &event {
            sim.set_event(&event.event_name, event.payload.clone())
                .unwrap();
        }
        Endorsement {
            tx_id: tx.tx_id.clone(),
            timestamp: tx.timestamp,
            kind,
            response,
            event,
            rwset: sim.into_rwset(),
            requests,
            open_iterators: iterators.len(),
        }
    }

    /// Answer one request as a Fabric peer would; `Err` becomes an ERROR message.
    fn serve_request(
        &self,
        kind: Type,
        payload: &[u8],
        sim: &mut TxSimulator<'_, MemoryLedger>,
        requests: &mut Vec<String>,
        iterators: &mut HashMap<String, Iter>,
        next_iterator: &mut u32,
    ) -> Result<Vec<u8>, String> {
        let ledger_error = |e: tom_contract::ledger::LedgerError| e.0;
        match kind {
            Type::GetState => {
                let request = GetState::decode(payload).unwrap();
                requests.push(format!("GET_STATE {:?}", request.key));
                if self.behaviour.refuse_key.as_deref() == Some(request.key.as_str()) {
                    return Err(format!("injected failure reading {:?}", request.key));
                }
                Ok(sim
                    .get_state(&request.key)
                    .map_err(ledger_error)?
                    .unwrap_or_default())
            }
            Type::PutState => {
                let request = PutState::decode(payload).unwrap();
                requests.push(format!(
                    "PUT_STATE {:?} {}",
                    request.key,
                    hex::encode(sha256(&request.value))
                ));
                sim.put_state(&request.key, request.value)
                    .map_err(ledger_error)?;
                Ok(Vec::new())
            }
            Type::DelState => {
                let request = DelState::decode(payload).unwrap();
                requests.push(format!("DEL_STATE {:?}", request.key));
                sim.delete_state(&request.key).map_err(ledger_error)?;
                Ok(Vec::new())
            }
            Type::GetStateByRange => {
                let request = GetStateByRange::decode(payload).unwrap();
                let pagination = (!request.metadata.is_empty())
                    .then(|| QueryMetadata::decode(request.metadata.as_slice()).unwrap());
                requests.push(format!(
                    "GET_STATE_BY_RANGE {:?} {:?} {:?}",
                    request.start_key,
                    request.end_key,
                    pagination
                        .as_ref()
                        .map(|p| (p.page_size, p.bookmark.clone()))
                ));
                let (rows, bookmark) = match &pagination {
                    Some(p) => {
                        let (rows, next) = sim
                            .get_state_by_range_with_pagination(
                                &request.start_key,
                                &request.end_key,
                                u32::try_from(p.page_size).unwrap(),
                                &p.bookmark,
                            )
                            .map_err(ledger_error)?;
                        (rows, Some(next))
                    }
                    None => (
                        sim.get_state_by_range(&request.start_key, &request.end_key)
                            .map_err(ledger_error)?,
                        None,
                    ),
                };
                let results = rows
                    .into_iter()
                    .map(|kv| {
                        queryresult::Kv {
                            namespace: "tom".into(),
                            key: kv.key,
                            value: kv.value,
                        }
                        .encode_to_vec()
                    })
                    .collect();
                Ok(self.open_iterator(iterators, next_iterator, results, bookmark))
            }
            Type::GetHistoryForKey => {
                let request = GetHistoryForKey::decode(payload).unwrap();
                requests.push(format!("GET_HISTORY_FOR_KEY {:?}", request.key));
                let mut history = sim
                    .get_history_for_key(&request.key)
                    .map_err(ledger_error)?;
                history.reverse(); // Fabric v2+ returns newest first.
                let results = history
                    .into_iter()
                    .map(|m| {
                        queryresult::KeyModification {
                            tx_id: m.tx_id,
                            value: m.value,
                            timestamp: Some(prost_types::Timestamp {
                                seconds: m.timestamp.seconds,
                                nanos: m.timestamp.nanos,
                            }),
                            is_delete: m.is_delete,
                        }
                        .encode_to_vec()
                    })
                    .collect();
                Ok(self.open_iterator(iterators, next_iterator, results, None))
            }
            Type::QueryStateNext => {
                let request = QueryStateNext::decode(payload).unwrap();
                requests.push(format!("QUERY_STATE_NEXT {}", request.id));
                if !iterators.contains_key(&request.id) {
                    return Err(format!("query iterator {} not found", request.id));
                }
                Ok(self.batch(iterators, &request.id))
            }
            Type::QueryStateClose => {
                let request = QueryStateClose::decode(payload).unwrap();
                requests.push(format!("QUERY_STATE_CLOSE {}", request.id));
                iterators.remove(&request.id);
                Ok(QueryResponse {
                    results: vec![],
                    has_more: false,
                    id: request.id,
                    metadata: vec![],
                }
                .encode_to_vec())
            }
            other => {
                requests.push(format!("UNEXPECTED {other:?}"));
                Err(format!("the driver peer does not serve {other:?}"))
            }
        }
    }

    fn open_iterator(
        &self,
        iterators: &mut HashMap<String, Iter>,
        next_iterator: &mut u32,
        results: Vec<Vec<u8>>,
        bookmark: Option<String>,
    ) -> Vec<u8> {
        *next_iterator += 1;
        let id = format!("iter-{next_iterator}");
        let total = results.len();
        iterators.insert(
            id.clone(),
            Iter {
                pending: results.into(),
                batches: 0,
                total,
                bookmark,
            },
        );
        self.batch(iterators, &id)
    }

    /// The next batch of an iterator; the last batch closes it, as Fabric's peer does, and a
    /// paginated query's last batch carries the bookmark.
    fn batch(&self, iterators: &mut HashMap<String, Iter>, id: &str) -> Vec<u8> {
        let iter = iterators.get_mut(id).unwrap();
        iter.batches += 1;
        let take = self.behaviour.batch_size.min(iter.pending.len());
        let mut results: Vec<QueryResultBytes> = iter
            .pending
            .drain(..take)
            .map(|result_bytes| QueryResultBytes { result_bytes })
            .collect();
        if self.behaviour.corrupt_second_batch && iter.batches == 2 {
            for result in &mut results {
                result.result_bytes = vec![0xff, 0xff, 0xff];
            }
        }
        let has_more = !iter.pending.is_empty();
        let metadata = match (&iter.bookmark, has_more) {
            (Some(bookmark), false) => QueryResponseMetadata {
                fetched_records_count: i32::try_from(iter.total).unwrap(),
                bookmark: bookmark.clone(),
            }
            .encode_to_vec(),
            _ => Vec::new(),
        };
        if !has_more {
            iterators.remove(id);
        }
        QueryResponse {
            results,
            has_more,
            id: id.to_owned(),
            metadata,
        }
        .encode_to_vec()
    }

    /// Commit an endorsed transaction to this peer's ledger (in a block of its own).
    pub fn commit(&self, endorsement: &Endorsement) -> Result<(), SubmitError> {
        let mut current = self.ledger.lock().unwrap();
        let mut next = (**current).clone();
        let outcome = next
            .commit_block(vec![Endorsed {
                tx_id: endorsement.tx_id.clone(),
                timestamp: endorsement.timestamp,
                rwset: endorsement.rwset.clone(),
                response: endorsement.response.payload.clone(),
            }])
            .pop()
            .unwrap();
        *current = Arc::new(next);
        outcome.map(|_| ())
    }

    /// Endorse and, if the chaincode accepted it, commit: a one-peer network.
    pub async fn submit(&self, tx: &SignedTx) -> Endorsement {
        let endorsement = self.endorse(tx).await;
        if endorsement.ok() {
            self.commit(&endorsement).unwrap();
        }
        endorsement
    }

    pub fn committed(&self) -> Arc<MemoryLedger> {
        self.ledger.lock().unwrap().clone()
    }
}

struct Iter {
    pending: VecDeque<Vec<u8>>,
    batches: u32,
    total: usize,
    bookmark: Option<String>,
}

pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// A proposal for `function(arg)` signed by `who`.
pub fn tx(clock: &TxClock, who: &Identity, function: &str, arg: &Value) -> SignedTx {
    clock.proposal(who, function, &[serde_json::to_vec(arg).unwrap()])
}

/// Fixture identity shorthand.
pub fn id(org: &str, name: &str) -> &'static Identity {
    tom_fixtures::identity(org, name)
}
