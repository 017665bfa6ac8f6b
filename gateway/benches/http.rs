//! Gateway throughput: actions per second and p50/p99 latency for identify-device, record-data
//! and exec-contract on the embedded ledger with durable (fsynced) commits, in-process (straight
//! to the ledger port, no HTTP) and over HTTP on loopback with 1, 8 and 64 concurrent clients;
//! plus this machine's ECDSA P-256 sign and verify rates in the same run, so the distance to the
//! signature-bound limit is visible.
//!
//! `cargo bench -p tom-gateway --bench http` (`TOM_BENCH_N=<actions per run>`, default 2000).
//! Every request is prepared (signed proofs, signed hashes) before its run starts, so the timed
//! part is exactly what an orchestrator waits for. Traffic goes to 127.0.0.1 only and every loop
//! is bounded by its count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tom_gateway::app::{self, AppState};
use tom_gateway::identities::IdentityStore;
use tom_gateway::ledger::embedded::{EmbeddedLedger, EmbeddedOptions};
use tom_gateway::ledger::{Ledger, SigningIdentity};

const TOKENS: &[(&str, &str, &str)] = &[
    ("admin", "org1", "admin"),
    ("orchestrator", "org1", "orchestrator"),
    ("light", "org1", "traffic-light-1"),
];

fn token(name: &str) -> String {
    format!("bench-token-{name}-0123456789")
}

fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
    )
}

/// Requests for one run: `n` of `action`, with ids unique to `tag`.
fn requests(action: Action, tag: &str, n: usize) -> Vec<Value> {
    let light = tom_fixtures::identity("org1", "traffic-light-1");
    let ca = tom_fixtures::org("org1").ca();
    (0..n)
        .map(|i| match action {
            Action::Identify => {
                // A certificate identifies one device only: each gets its own.
                let (id, nonce) = (format!("dev-{tag}-{i}"), format!("nonce-{tag}-{i}"));
                let issued = tom_fixtures::pki::issue_identity(
                    &ca,
                    &id,
                    Some("client"),
                    Some("device"),
                    (2024, 1, 1),
                    (2099, 12, 31),
                )
                .unwrap_or_else(|e| panic!("issuing {id}: {e}"));
                let request = tom_contract::requests::IdentifyDevice::signed(
                    &id,
                    light.msp_id,
                    "sensor",
                    &issued.cert_pem,
                    &nonce,
                    tom_contract::simulation::DEFAULT_CHANNEL,
                    |m| {
                        tom_fixtures::pki::sign_p256(&issued.key_pkcs8_pem, m)
                            .unwrap_or_else(|e| panic!("{e}"))
                    },
                )
                .unwrap_or_else(|e| panic!("{e}"));
                serde_json::to_value(request).unwrap_or_else(|e| panic!("{e}"))
            }
            Action::RecordData => {
                let id = format!("count-{tag}-{i}");
                let request = tom_contract::requests::RecordData {
                    data_id: id.clone(),
                    kind: "count".into(),
                    hash: sha256(id.as_bytes()),
                    size: 64,
                    location: format!("file:///d/{id}"),
                    generated_by: "light-1".into(),
                    derived_from: vec![],
                    claim: Default::default(),
                }
                .sign(tom_contract::simulation::DEFAULT_CHANNEL, "", |m| {
                    light.sign(m)
                })
                .unwrap_or_else(|e| panic!("{e}"));
                serde_json::to_value(request).unwrap_or_else(|e| panic!("{e}"))
            }
            // Uses the data the record-data run of the same tag recorded.
            Action::Exec => {
                json!({ "contract_id": "analyse", "data_id": format!("count-{tag}-{i}") })
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Identify,
    RecordData,
    Exec,
}

impl Action {
    fn function(self) -> &'static str {
        match self {
            Action::Identify => "IdentifyDevice",
            Action::RecordData => "RecordData",
            Action::Exec => "ExecContract",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Action::Identify => "/v1/devices",
            Action::RecordData => "/v1/data",
            Action::Exec => "/v1/executions",
        }
    }

    fn caller(self) -> &'static str {
        match self {
            Action::RecordData => "light",
            _ => "orchestrator",
        }
    }
}

struct Outcome {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn summarise(elapsed: Duration, mut latencies: Vec<Duration>) -> Outcome {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    Outcome {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// Run `requests` with `clients` concurrent workers, each taking the next request in turn.
async fn drive<F, Fut>(requests: Vec<Value>, clients: usize, send: F) -> Outcome
where
    F: Fn(Value) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let queue = Arc::new(std::sync::Mutex::new(requests.into_iter()));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (queue, send) = (queue.clone(), send.clone());
            // One task per client: they contend for the gateway as independent orchestrators would.
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    // The lock is released before the await.
                    let next = queue.lock().map(|mut q| q.next()).unwrap_or(None);
                    let Some(request) = next else { break };
                    let t = Instant::now();
                    send(request).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap_or_default());
    }
    summarise(started.elapsed(), all)
}

fn report(mode: &str, clients: usize, action: Action, o: &Outcome) {
    println!("{mode:<11} {clients:>3} clients  {:<15} {:>9.0} actions/s   p50 {:>8.2} ms   p99 {:>8.2} ms", action.function(), o.per_second, o.p50.as_secs_f64() * 1e3, o.p99.as_secs_f64() * 1e3);
}

/// Signatures per second on one core: P-256 signing as [`SigningIdentity`] does it (the p256
/// crate), signing with ring, and verifying with ring (as the contract does).
fn signature_rates() -> (f64, f64, f64) {
    let light = tom_fixtures::identity("org1", "traffic-light-1");
    let identity = SigningIdentity::from_pem(light.msp_id, light.cert_pem, light.key_pkcs8_pem)
        .unwrap_or_else(|e| panic!("{e}"));
    let cert = tom_contract::identity::Certificate::from_pem(light.cert_pem)
        .unwrap_or_else(|e| panic!("{e}"));
    let message = b"tom benchmark message: a proposal or a data hash";
    let n = 3000;
    let rate = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        n as f64 / t.elapsed().as_secs_f64()
    };
    let mut signature = Vec::new();
    let sign = rate(&mut || signature = identity.sign(message));
    let der = pem_body(light.key_pkcs8_pem);
    let rng = ring::rand::SystemRandom::new();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &der,
        &rng,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ring_sign = rate(&mut || {
        let _ = key.sign(&rng, message);
    });
    let verify = rate(&mut || assert!(cert.verify(message, &signature)));
    (sign, ring_sign, verify)
}

fn pem_body(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn main() {
    let n: usize = std::env::var("TOM_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
    runtime.block_on(run(n));
}

/// A fresh embedded ledger in a temporary directory with the org registered, the traffic light
/// `light-1` joined (the generator of the recorded data) and a contract `analyse` under which
/// that data is used; plus the callers' identities and tokens.
struct World {
    _dir: tempfile::TempDir,
    ledger: Arc<EmbeddedLedger>,
    store: IdentityStore,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ledger = Arc::new(
            EmbeddedLedger::open(&dir.path().join("ledger"), EmbeddedOptions::default())
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let mut store = IdentityStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        for (name, org, fixture) in TOKENS {
            let f = tom_fixtures::identity(org, fixture);
            store
                .add(name, f.msp_id, f.cert_pem, f.key_pkcs8_pem)
                .unwrap_or_else(|e| panic!("{e}"));
            store
                .add_token(name, &token(name))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let world = World {
            _dir: dir,
            ledger,
            store,
        };
        let (admin, orchestrator) = (world.signer("admin"), world.signer("orchestrator"));
        let org = tom_fixtures::org("org1");
        let tl = tom_fixtures::identity("org1", "traffic-light-1");
        let light_join = tom_contract::requests::IdentifyDevice::signed(
            "light-1",
            tl.msp_id,
            "sensor",
            tl.cert_pem,
            "nonce-light-1",
            tom_contract::simulation::DEFAULT_CHANNEL,
            |m| tl.sign(m),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let deadline = tom_contract::Timestamp::from_seconds(
            tom_gateway::ledger::memory::now().seconds + 86_400,
        )
        .to_rfc3339();
        let setup = [
            (
                &admin,
                "RegisterOrg",
                json!({ "msp_id": org.msp_id, "ca_certificates": [org.ca_cert_pem] }),
            ),
            (
                &orchestrator,
                "IdentifyDevice",
                serde_json::to_value(&light_join).unwrap_or_else(|e| panic!("{e}")),
            ),
            (
                &orchestrator,
                "DefineContract",
                json!({ "contract_id": "analyse", "contractor": "light-1", "uses": [{ "kind": "count", "source": "light-1" }], "deadline": deadline }),
            ),
        ];
        for (who, function, request) in setup {
            world
                .ledger
                .submit(who, function, request.to_string().as_bytes())
                .await
                .unwrap_or_else(|e| panic!("{function}: {e}"));
        }
        world
    }

    fn signer(&self, name: &str) -> SigningIdentity {
        self.store
            .get(name)
            .map(|i| i.signing.clone())
            .unwrap_or_else(|| panic!("no identity {name}"))
    }
}

async fn run(n: usize) {
    let (sign, ring_sign, verify) = signature_rates();
    println!("ECDSA P-256 on this machine, one core: sign {sign:.0}/s (SigningIdentity: ring + low-S normalisation), sign {ring_sign:.0}/s (bare ring), verify {verify:.0}/s (ring, as the contract verifies)");
    println!(
        "cores: {}",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );

    println!("\n{n} actions per run (n/4 with 1 client), embedded ledger, durable commits (fsync per block); every (mode, clients) row group starts from a fresh ledger");
    // In-process: straight to the ledger port, as the handlers call it.
    for clients in [1, 8, 64] {
        let world = World::new().await;
        let count = if clients == 1 { n / 4 } else { n };
        for action in [Action::Identify, Action::RecordData, Action::Exec] {
            let who = world.signer(action.caller());
            let ledger: Arc<dyn Ledger> = world.ledger.clone();
            let o = drive(
                requests(action, "run", count),
                clients,
                move |request: Value| {
                    let (ledger, who) = (ledger.clone(), who.clone());
                    async move {
                        ledger
                            .submit(&who, action.function(), request.to_string().as_bytes())
                            .await
                            .unwrap_or_else(|e| panic!("{}: {e}", action.function()));
                    }
                },
            )
            .await;
            report("in-process", clients, action, &o);
        }
        world.ledger.shutdown();
    }

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    for clients in [1, 8, 64] {
        let world = World::new().await;
        let ledger = world.ledger.clone();
        let running = app::spawn("127.0.0.1:0", AppState::new(ledger.clone(), world.store))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let base = running.url();
        let count = if clients == 1 { n / 4 } else { n };
        for action in [Action::Identify, Action::RecordData, Action::Exec] {
            let url = format!("{base}{}", action.path());
            let (http, bearer) = (http.clone(), token(action.caller()));
            let o = drive(
                requests(action, "run", count),
                clients,
                move |request: Value| {
                    let (http, url, bearer) = (http.clone(), url.clone(), bearer.clone());
                    async move {
                        let response = http
                            .post(&url)
                            .bearer_auth(&bearer)
                            .json(&request)
                            .send()
                            .await
                            .unwrap_or_else(|e| panic!("{url}: {e}"));
                        let status = response.status();
                        if !status.is_success() {
                            panic!(
                                "{url}: {status}: {}",
                                response.text().await.unwrap_or_default()
                            );
                        }
                    }
                },
            )
            .await;
            report("HTTP", clients, action, &o);
        }
        let _ = running.stop().await;
        println!("            (blocks in this ledger: {}; group commit puts many transactions in one fsync)", ledger.height());
        ledger.shutdown();
    }
    println!("\nThe HTTP layer alone (a null ledger that commits nothing), for comparison:");
    http_layer_only(n).await;
}

/// A ledger that commits nothing and answers at once, to measure what the HTTP layer alone
/// (auth, JSON, routing, hyper and the client, on the same cores) can carry on this machine.
/// Used only here; its figures are labelled "HTTP only".
struct NullLedger {
    events: tokio::sync::broadcast::Sender<tom_gateway::ledger::CommittedEvent>,
    record: Vec<u8>,
}

#[async_trait::async_trait]
impl Ledger for NullLedger {
    async fn submit(
        &self,
        _: &SigningIdentity,
        _: &str,
        _: &[u8],
    ) -> Result<tom_gateway::ledger::Submitted, tom_gateway::ledger::LedgerError> {
        Ok(tom_gateway::ledger::Submitted {
            tx_id: "0".repeat(64),
            block: 1,
            response: self.record.clone(),
        })
    }

    async fn evaluate(
        &self,
        _: &SigningIdentity,
        _: &str,
        _: &[u8],
    ) -> Result<Vec<u8>, tom_gateway::ledger::LedgerError> {
        Ok(b"{}".to_vec())
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<tom_gateway::ledger::CommittedEvent> {
        self.events.subscribe()
    }

    fn describe(&self) -> String {
        "null (benchmark only)".into()
    }
}

async fn http_layer_only(n: usize) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut store = IdentityStore::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let f = tom_fixtures::identity("org1", "traffic-light-1");
    store
        .add("light", f.msp_id, f.cert_pem, f.key_pkcs8_pem)
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .add_token("light", &token("light"))
        .unwrap_or_else(|e| panic!("{e}"));
    // A response of realistic size: a PROV-DATA record.
    let record = json!({ "kind": "PROV-DATA", "tx_id": "0".repeat(64), "timestamp": "2026-01-01T00:00:00Z",
        "agent": { "id": "Org1MSP/traffic-light-1", "msp_id": "Org1MSP", "common_name": "traffic-light-1", "role": "device", "certificate_sha256": "0".repeat(64) },
        "subjects": ["count-1", "light-1"], "body": { "what": "record_data", "data": "count-1", "kind": "count", "hash": sha256(b"x"), "generated_by": "light-1", "host_device": null, "derived_from": [], "fulfils": [] } });
    let ledger = NullLedger {
        events: tokio::sync::broadcast::channel(16).0,
        record: record.to_string().into_bytes(),
    };
    let running = app::spawn("127.0.0.1:0", AppState::new(Arc::new(ledger), store))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("{}{}", running.url(), Action::RecordData.path());
    for clients in [1, 8, 64] {
        let (http, url, bearer) = (http.clone(), url.clone(), token("light"));
        let o = drive(
            requests(Action::RecordData, "null", n),
            clients,
            move |request: Value| {
                let (http, url, bearer) = (http.clone(), url.clone(), bearer.clone());
                async move {
                    let response = http
                        .post(&url)
                        .bearer_auth(&bearer)
                        .json(&request)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("{url}: {e}"));
                    assert!(response.status().is_success());
                    let _ = response.bytes().await;
                }
            },
        )
        .await;
        report("HTTP only", clients, Action::RecordData, &o);
    }
    let _ = running.stop().await;
}
