//! The REST API end to end: the app is spawned on 127.0.0.1:0 over a real ledger and called
//! with a real HTTP client, as an orchestrator, a device and an auditor would.
//!
//! Bad input of every kind must come back as a clear 4xx JSON error naming the problem, and
//! must write nothing (checked by counting the ledger's records before and after); a ledger
//! outage must come back as 503 and record nothing; an acknowledged write must survive a
//! restart of the gateway on the embedded ledger.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tom_gateway::app::{self, AppState, Running};
use tom_gateway::identities::IdentityStore;
use tom_gateway::ledger::embedded::{EmbeddedLedger, EmbeddedOptions};
use tom_gateway::ledger::memory::InMemoryLedger;
use tom_gateway::ledger::{CommittedEvent, Ledger, LedgerError, SigningIdentity, Submitted};

/// Gateway identity name → fixture identity (org, name).
const CALLERS: &[(&str, &str, &str)] = &[
    ("admin", "org1", "admin"),
    ("orchestrator", "org1", "orchestrator"),
    ("auditor", "org1", "auditor"),
    ("light", "org1", "traffic-light-1"),
    ("analyser", "org1", "analyser"),
    ("no-role", "org1", "no-role"),
];

fn token(name: &str) -> String {
    format!("test-token-for-{name}")
}

/// Write the test identities and tokens into `dir`.
fn install_identities(dir: &Path) -> IdentityStore {
    let mut store = IdentityStore::open(dir).unwrap();
    for (name, org, fixture) in CALLERS {
        if store.get(name).is_none() {
            let f = tom_fixtures::identity(org, fixture);
            store
                .add(name, f.msp_id, f.cert_pem, f.key_pkcs8_pem)
                .unwrap();
            store.add_token(name, &token(name)).unwrap();
        }
    }
    IdentityStore::open(dir).unwrap()
}

struct Gw {
    running: Running,
    http: reqwest::Client,
}

struct Reply {
    status: StatusCode,
    body: Value,
}

impl Reply {
    fn error(&self) -> &str {
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {}", self.body))
    }

    #[track_caller]
    fn ok(self) -> Value {
        assert!(
            self.status.is_success(),
            "expected success, got {}: {}",
            self.status,
            self.body
        );
        self.body
    }
}

impl Gw {
    async fn start(dir: &Path, ledger: Arc<dyn Ledger>) -> Gw {
        let store = install_identities(dir);
        let running = app::spawn("127.0.0.1:0", AppState::new(ledger, store))
            .await
            .unwrap();
        Gw {
            running,
            http: reqwest::Client::new(),
        }
    }

    async fn memory(dir: &Path) -> Gw {
        Gw::start(dir, Arc::new(InMemoryLedger::new())).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.url())
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        who: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let mut request = self.http.request(method, self.url(path));
        if let Some(who) = who {
            request = request.bearer_auth(token(who));
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, body }
    }

    async fn call(&self, method: Method, path: &str, who: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
        self.raw(method, path, Some(who), body).await
    }

    async fn get(&self, path: &str, who: &str) -> Reply {
        self.call(Method::GET, path, who, None).await
    }

    async fn post(&self, path: &str, who: &str, body: Value) -> Reply {
        self.call(Method::POST, path, who, Some(body)).await
    }

    /// How many records the ledger holds (all agents, all time).
    async fn record_count(&self) -> usize {
        let page = self.get("/v1/records?page_size=1000", "auditor").await.ok();
        page["records"].as_array().unwrap().len()
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
    )
}

fn register_org1() -> Value {
    let org = tom_fixtures::org("org1");
    json!({ "msp_id": org.msp_id, "ca_certificates": [org.ca_cert_pem] })
}

fn identify_device(device_id: &str, fixture: &str, nonce: &str) -> Value {
    let f = tom_fixtures::identity("org1", fixture);
    let request = tom_contract::requests::IdentifyDevice::signed(
        device_id,
        f.msp_id,
        "actuator",
        f.cert_pem,
        nonce,
        tom_contract::simulation::DEFAULT_CHANNEL,
        |m| f.sign(m),
    )
    .unwrap();
    serde_json::to_value(request).unwrap()
}

fn record_data(
    data_id: &str,
    kind: &str,
    generator: &str,
    signer: &str,
    derived_from: &[&str],
) -> Value {
    let signer = tom_fixtures::identity("org1", signer);
    let request = tom_contract::requests::RecordData {
        data_id: data_id.to_owned(),
        kind: kind.to_owned(),
        hash: sha256(data_id.as_bytes()),
        size: 12,
        location: format!("file:///data/{data_id}"),
        generated_by: generator.to_owned(),
        derived_from: derived_from.iter().map(|s| (*s).to_owned()).collect(),
        claim: Default::default(),
    }
    .sign(tom_contract::simulation::DEFAULT_CHANNEL, "", |m| {
        signer.sign(m)
    })
    .unwrap();
    serde_json::to_value(request).unwrap()
}

fn deadline() -> String {
    tom_contract::Timestamp::from_seconds(tom_gateway::ledger::memory::now().seconds + 3600)
        .to_rfc3339()
}

/// Org registered, traffic light joined, analyser container joined and placed on it, a
/// contract for the analyser to use the light's counts, one count recorded.
async fn populate(gw: &Gw) -> BTreeMap<&'static str, Value> {
    let mut steps = BTreeMap::new();
    steps.insert(
        "org",
        gw.post("/v1/orgs", "admin", register_org1()).await.ok(),
    );
    steps.insert(
        "device",
        gw.post(
            "/v1/devices",
            "orchestrator",
            identify_device("light-1", "traffic-light-1", "n-1"),
        )
        .await
        .ok(),
    );
    let analyser = tom_fixtures::identity("org1", "analyser");
    let container = tom_contract::requests::IdentifyContainer {
        container_id: "analyser".into(),
        org: "Org1MSP".into(),
        image: "city/analyser:1".into(),
        digest: sha256(b"image"),
        publisher_signature: None,
        certificate: None,
        nonce: None,
        proof: None,
    }
    .with_workload_identity(
        analyser.cert_pem,
        "n-analyser",
        tom_contract::simulation::DEFAULT_CHANNEL,
        |m| analyser.sign(m),
    )
    .unwrap();
    let container = serde_json::to_value(container).unwrap();
    steps.insert(
        "container",
        gw.post("/v1/containers", "orchestrator", container)
            .await
            .ok(),
    );
    steps.insert(
        "placement",
        gw.post(
            "/v1/placements",
            "orchestrator",
            json!({ "container_id": "analyser", "device_id": "light-1" }),
        )
        .await
        .ok(),
    );
    let contract = json!({ "contract_id": "analyse", "contractor": "analyser", "uses": [{ "kind": "count", "source": "light-1" }], "generates": [{ "kind": "plan" }], "deadline": deadline() });
    steps.insert(
        "contract",
        gw.post("/v1/contracts", "orchestrator", contract)
            .await
            .ok(),
    );
    steps.insert(
        "data",
        gw.post(
            "/v1/data",
            "light",
            record_data("count-1", "count", "light-1", "traffic-light-1", &[]),
        )
        .await
        .ok(),
    );
    steps
}

#[tokio::test]
async fn writes_answer_with_tx_id_status_block_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::memory(dir.path()).await;
    let steps = populate(&gw).await;
    let mut blocks = Vec::new();
    for (step, kind) in [
        ("org", "ORG"),
        ("device", "PROV-ID-create"),
        ("container", "PROV-ID-create"),
        ("placement", "ORCHESTRATE"),
        ("contract", "CONTRACT"),
        ("data", "PROV-DATA"),
    ] {
        let c = &steps[step];
        assert_eq!(c["status"], "VALID", "{step}: {c}");
        assert_eq!(
            c["tx_id"].as_str().unwrap().len(),
            64,
            "{step}: a Fabric-style hex tx id"
        );
        assert_eq!(c["record"]["kind"], kind, "{step}");
        assert_eq!(
            c["record"]["tx_id"], c["tx_id"],
            "{step}: the record is the one this tx wrote"
        );
        blocks.push(c["block"].as_u64().unwrap());
    }
    assert!(
        blocks.windows(2).all(|w| w[0] < w[1]),
        "sequential writes land in increasing blocks: {blocks:?}"
    );
    // The caller is the creator: the device's data is attributed to the device's identity.
    assert_eq!(
        steps["data"]["record"]["agent"]["id"],
        "Org1MSP/traffic-light-1"
    );
    assert_eq!(
        steps["device"]["record"]["agent"]["id"],
        "Org1MSP/orchestrator"
    );

    // EXEC, then the derived output, then audits over all of it.
    let exec = gw
        .post(
            "/v1/executions",
            "orchestrator",
            json!({ "contract_id": "analyse", "data_id": "count-1" }),
        )
        .await
        .ok();
    assert_eq!(exec["record"]["kind"], "PROV-ORCH");
    gw.post(
        "/v1/data",
        "analyser",
        record_data("plan-1", "plan", "analyser", "analyser", &["count-1"]),
    )
    .await
    .ok();

    let entity = gw.get("/v1/entities/plan-1", "auditor").await.ok();
    assert_eq!(
        (entity["type"].as_str(), entity["host_device"].as_str()),
        (Some("data"), Some("light-1"))
    );
    let contract = gw.get("/v1/entities/analyse", "auditor").await.ok();
    assert_eq!(contract["state"], "fulfilled");
    let history = gw.get("/v1/entities/analyse/history", "auditor").await.ok();
    assert_eq!(
        history.as_array().unwrap().len(),
        2,
        "defined, then fulfilled: {history}"
    );
    let lineage = gw
        .get("/v1/lineage/plan-1?direction=up&depth=4", "auditor")
        .await
        .ok();
    let has = |rel: &str, from: &str, to: &str| {
        lineage["relations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["relation"] == rel && r["from"] == from && r["to"] == to)
    };
    assert!(
        has("wasDerivedFrom", "plan-1", "count-1")
            && has("used", "analyser", "count-1")
            && has("placedOn", "analyser", "light-1"),
        "{lineage}"
    );
    let down = gw
        .get("/v1/lineage/count-1?direction=down", "auditor")
        .await
        .ok();
    assert!(down["nodes"].as_object().unwrap().contains_key("plan-1"));
    let prov = gw.get("/v1/prov/plan-1", "auditor").await.ok();
    assert!(
        prov["entity"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.ends_with("plan-1")),
        "{prov}"
    );
    assert!(prov["wasDerivedFrom"]
        .as_object()
        .is_some_and(|m| !m.is_empty()));
    let by_light = gw
        .get("/v1/records?agent=Org1MSP%2Ftraffic-light-1", "auditor")
        .await
        .ok();
    let kinds: Vec<&str> = by_light["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["PROV-DATA"]);
    let window = gw
        .get(
            &format!(
                "/v1/records?entity=light-1&from=2020-01-01T00:00:00Z&to={}",
                deadline()
            ),
            "auditor",
        )
        .await
        .ok();
    assert!(window["records"].as_array().unwrap().len() >= 3, "{window}");
    let tx = steps["placement"]["tx_id"].as_str().unwrap();
    assert_eq!(
        gw.get(&format!("/v1/transactions/{tx}"), "auditor")
            .await
            .ok()["kind"],
        "ORCHESTRATE"
    );
    assert_eq!(
        gw.get("/v1/orgs/Org1MSP", "auditor").await.ok()["msp_id"],
        "Org1MSP"
    );

    // Removals: the container leaves (taking its placement), then the device can leave.
    let left = gw
        .call(
            Method::DELETE,
            "/v1/containers/analyser?reason=upgrade",
            "orchestrator",
            None,
        )
        .await
        .ok();
    assert_eq!(
        (
            left["record"]["kind"].as_str(),
            left["record"]["body"]["reason"].as_str()
        ),
        (Some("PROV-ID-delete"), Some("upgrade"))
    );
    let gone = gw
        .call(Method::DELETE, "/v1/devices/light-1", "orchestrator", None)
        .await
        .ok();
    assert_eq!(gone["record"]["body"]["entity"], "light-1");
    assert_eq!(
        gw.get("/v1/entities/light-1", "auditor").await.ok()["state"],
        "left"
    );

    // Outcome, drift and contract settlement routes reach their contract functions.
    let drift = gw
        .post(
            "/v1/drifts",
            "orchestrator",
            json!({ "service": "tom-analyser", "description": "replica count 2, authorised 1" }),
        )
        .await
        .ok();
    assert_eq!(drift["record"]["kind"], "DRIFT");
    let outcome = gw.post("/v1/outcomes", "orchestrator", json!({ "container_id": "analyser", "action": "terminate", "authorising_tx": left["tx_id"], "outcome": "removed" })).await.ok();
    assert_eq!(outcome["record"]["kind"], "OUTCOME");
    let early = gw
        .call(
            Method::POST,
            "/v1/contracts/analyse/evaluate",
            "auditor",
            None,
        )
        .await;
    assert_eq!(
        early.status,
        StatusCode::CONFLICT,
        "a fulfilled contract cannot be settled as violated: {}",
        early.body
    );
    gw.running.stop().await.unwrap();
}

/// One bad request: its status, a fragment of its message, and that nothing was written.
struct Bad {
    what: &'static str,
    method: Method,
    path: &'static str,
    who: Option<&'static str>,
    body: Option<(&'static str, Vec<u8>)>,
    status: StatusCode,
    message: &'static str,
}

fn bad(
    what: &'static str,
    method: Method,
    path: &'static str,
    who: Option<&'static str>,
    body: Option<Value>,
    status: u16,
    message: &'static str,
) -> Bad {
    let body = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
    Bad {
        what,
        method,
        path,
        who,
        body,
        status: StatusCode::from_u16(status).unwrap(),
        message,
    }
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::memory(dir.path()).await;
    populate(&gw).await;
    let before = gw.record_count().await;
    let mut device = identify_device("light-2", "roadside-gateway-1", "n-2");
    let mut with_unknown = device.clone();
    with_unknown["colour"] = json!("red");
    let mut without_id = device.clone();
    without_id.as_object_mut().unwrap().remove("device_id");
    let mut forged = device.clone();
    // A well-formed proof, signed by another device's key.
    forged["proof"] = identify_device("light-2", "edge-node-1", "n-2")["proof"].clone();
    device["node_id"] = json!("swarm-node-7");
    let big = vec![b' '; 2 << 20];
    let post = Method::POST;
    let cases = vec![
        Bad {
            what: "malformed JSON",
            method: post.clone(),
            path: "/v1/devices",
            who: Some("orchestrator"),
            body: Some(("application/json", b"{\"device_id\": ".to_vec())),
            status: StatusCode::BAD_REQUEST,
            message: "EOF while parsing",
        },
        bad(
            "unknown field",
            post.clone(),
            "/v1/devices",
            Some("orchestrator"),
            Some(with_unknown),
            400,
            "unknown field `colour`",
        ),
        bad(
            "missing field",
            post.clone(),
            "/v1/devices",
            Some("orchestrator"),
            Some(without_id),
            400,
            "missing field `device_id`",
        ),
        bad(
            "unknown field (typed body)",
            post.clone(),
            "/v1/placements",
            Some("orchestrator"),
            Some(json!({ "container_id": "analyser", "device": "light-1" })),
            400,
            "unknown field `device`",
        ),
        bad(
            "wrong type",
            post.clone(),
            "/v1/data",
            Some("light"),
            Some(json!({ "data_id": 7 })),
            400,
            "invalid type: integer `7`, expected a string",
        ),
        Bad {
            what: "not JSON content",
            method: post.clone(),
            path: "/v1/devices",
            who: Some("orchestrator"),
            body: Some(("text/plain", b"hello".to_vec())),
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "Content-Type: application/json",
        },
        Bad {
            what: "oversized body",
            method: post.clone(),
            path: "/v1/devices",
            who: Some("orchestrator"),
            body: Some(("application/json", big)),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: "larger than the limit of 262144 bytes",
        },
        bad(
            "invalid value (contract check)",
            post.clone(),
            "/v1/devices",
            Some("orchestrator"),
            Some(identify_device("light 2", "traffic-light-1", "n-3")),
            400,
            "device_id \"light 2\" contains ' '",
        ),
        bad(
            "forged proof",
            post.clone(),
            "/v1/devices",
            Some("orchestrator"),
            Some(forged),
            403,
            "does not verify",
        ),
        bad(
            "node_id without an orchestrator",
            post.clone(),
            "/v1/devices",
            Some("orchestrator"),
            Some(device),
            400,
            "node_id \"swarm-node-7\" given",
        ),
        bad(
            "unknown entity",
            Method::GET,
            "/v1/entities/nope",
            Some("auditor"),
            None,
            404,
            "entity nope does not exist",
        ),
        bad(
            "unknown contract",
            post.clone(),
            "/v1/executions",
            Some("orchestrator"),
            Some(json!({ "contract_id": "nope", "data_id": "count-1" })),
            404,
            "contract nope does not exist",
        ),
        bad(
            "unknown transaction",
            Method::GET,
            "/v1/transactions/abc",
            Some("auditor"),
            None,
            404,
            "record abc does not exist",
        ),
        bad(
            "guard refused",
            post.clone(),
            "/v1/placements",
            Some("orchestrator"),
            Some(json!({ "container_id": "analyser", "device_id": "light-1" })),
            409,
            "place container refused",
        ),
        bad(
            "wrong role",
            post.clone(),
            "/v1/devices",
            Some("auditor"),
            Some(identify_device("light-3", "traffic-light-1", "n-4")),
            403,
            "has role auditor; this needs role orchestrator",
        ),
        bad(
            "no role",
            post.clone(),
            "/v1/placements",
            Some("no-role"),
            Some(json!({ "container_id": "analyser", "device_id": "light-1" })),
            403,
            "has no tom.role attribute",
        ),
        bad(
            "device may not place",
            post.clone(),
            "/v1/placements",
            Some("light"),
            Some(json!({ "container_id": "analyser", "device_id": "light-1" })),
            403,
            "has role device",
        ),
        bad(
            "missing auth",
            post.clone(),
            "/v1/devices",
            None,
            Some(identify_device("light-4", "traffic-light-1", "n-5")),
            401,
            "missing Authorization header",
        ),
        bad(
            "unknown token",
            post.clone(),
            "/v1/devices",
            Some("stranger"),
            Some(identify_device("light-5", "traffic-light-1", "n-6")),
            401,
            "unknown API token",
        ),
        bad(
            "audit without auth",
            Method::GET,
            "/v1/records",
            None,
            None,
            401,
            "missing Authorization header",
        ),
        bad(
            "unknown query parameter",
            Method::GET,
            "/v1/records?colour=red",
            Some("auditor"),
            None,
            400,
            "unknown field `colour`",
        ),
        bad(
            "bad query value",
            Method::GET,
            "/v1/lineage/count-1?depth=deep",
            Some("auditor"),
            None,
            400,
            "depth",
        ),
        bad(
            "bad direction",
            Method::GET,
            "/v1/lineage/count-1?direction=sideways",
            Some("auditor"),
            None,
            400,
            "unknown variant `sideways`",
        ),
        bad(
            "bad time window",
            Method::GET,
            "/v1/records?from=yesterday",
            Some("auditor"),
            None,
            400,
            "from \"yesterday\" is not an RFC 3339 timestamp",
        ),
        bad(
            "no such route",
            Method::GET,
            "/v1/nothing",
            Some("auditor"),
            None,
            404,
            "no route for GET /v1/nothing",
        ),
        bad(
            "wrong method",
            Method::PUT,
            "/v1/devices",
            Some("orchestrator"),
            Some(json!({})),
            405,
            "does not accept PUT",
        ),
    ];
    for case in cases {
        let reply = gw.raw(case.method, case.path, case.who, case.body).await;
        assert_eq!(reply.status, case.status, "{}: {}", case.what, reply.body);
        assert_eq!(
            reply.body["status"],
            case.status.as_u16(),
            "{}: the JSON carries the status",
            case.what
        );
        assert!(
            reply.error().contains(case.message),
            "{}: message {:?} should contain {:?}",
            case.what,
            reply.error(),
            case.message
        );
    }
    let unauthorised = gw.raw(Method::GET, "/v1/records", None, None).await;
    assert_eq!(unauthorised.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        gw.record_count().await,
        before,
        "no bad request wrote anything"
    );
    // And the metrics counted the refusals without counting a commit.
    let metrics = gw.raw(Method::GET, "/metrics", None, None).await.body;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains(
            // (out-of-bounds fields are refused by the gateway before any ledger call)
            "tom_ledger_transactions_total{function=\"IdentifyDevice\",result=\"rejected\"} 3"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "tom_http_requests_total{method=\"POST\",route=\"/v1/devices\",status=\"413\"} 1"
        ),
        "{metrics}"
    );
}

/// A ledger that can be switched off: while down, every call fails as an outage would.
struct Switchable {
    inner: InMemoryLedger,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl Ledger for Switchable {
    async fn submit(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<Submitted, LedgerError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(LedgerError::Unavailable("orderer unreachable".into()));
        }
        self.inner.submit(identity, function, argument).await
    }

    async fn evaluate(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<Vec<u8>, LedgerError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(LedgerError::Unavailable("peer unreachable".into()));
        }
        self.inner.evaluate(identity, function, argument).await
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<CommittedEvent> {
        self.inner.subscribe()
    }

    fn describe(&self) -> String {
        "switchable in-memory".into()
    }
}

#[tokio::test]
async fn a_ledger_outage_is_503_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Switchable {
        inner: InMemoryLedger::new(),
        down: AtomicBool::new(false),
    });
    let gw = Gw::start(dir.path(), ledger.clone()).await;
    gw.post("/v1/orgs", "admin", register_org1()).await.ok();
    let before = gw.record_count().await;
    ledger.down.store(true, Ordering::SeqCst);
    let reply = gw
        .post(
            "/v1/devices",
            "orchestrator",
            identify_device("light-1", "traffic-light-1", "n-1"),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert!(
        reply
            .error()
            .contains("ledger unavailable: orderer unreachable"),
        "{}",
        reply.error()
    );
    let audit = gw.get("/v1/entities/light-1", "auditor").await;
    assert_eq!(audit.status, StatusCode::SERVICE_UNAVAILABLE);
    ledger.down.store(false, Ordering::SeqCst);
    assert_eq!(gw.record_count().await, before);
    assert_eq!(
        gw.get("/v1/entities/light-1", "auditor").await.status,
        StatusCode::NOT_FOUND
    );
    // The same request succeeds once the ledger is back: nothing half-done was left in the way.
    gw.post(
        "/v1/devices",
        "orchestrator",
        identify_device("light-1", "traffic-light-1", "n-1"),
    )
    .await
    .ok();
}

#[tokio::test]
async fn committed_records_stream_as_server_sent_events() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::memory(dir.path()).await;
    let missing = gw.raw(Method::GET, "/v1/events", None, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    let mut stream = gw
        .http
        .get(gw.url("/v1/events"))
        .bearer_auth(token("auditor"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut only_ids = gw
        .http
        .get(gw.url("/v1/events?kind=PROV-ID-create,PROV-ID-delete"))
        .bearer_auth(token("auditor"))
        .send()
        .await
        .unwrap();
    assert_eq!(only_ids.status(), StatusCode::OK);
    let bad_kind = gw
        .get("/v1/events?kind=PROV-DATA,PROVDATA", "auditor")
        .await;
    assert_eq!(bad_kind.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_kind
            .error()
            .contains("kind \"PROVDATA\" is not a record kind"),
        "{}",
        bad_kind.error()
    );
    let org = gw.post("/v1/orgs", "admin", register_org1()).await.ok();
    let device = gw
        .post(
            "/v1/devices",
            "orchestrator",
            identify_device("light-1", "traffic-light-1", "n-1"),
        )
        .await
        .ok();
    let (events, text) = read_events(&mut stream, device["tx_id"].as_str().unwrap()).await;
    assert_eq!(events.len(), 2, "{text}");
    let event_id = |c: &Value| format!("{}.{}", c["block"], c["tx_id"].as_str().unwrap());
    assert_eq!(
        (events[0].0.as_str(), events[0].1.clone()),
        ("ORG", event_id(&org))
    );
    assert_eq!(
        (events[1].0.as_str(), events[1].1.clone()),
        ("PROV-ID-create", event_id(&device))
    );
    assert_eq!(
        events[1].2, device["record"],
        "the event carries the committed record"
    );
    let (filtered, text) = read_events(&mut only_ids, device["tx_id"].as_str().unwrap()).await;
    assert_eq!(filtered.len(), 1, "the ORG record is filtered out: {text}");
    assert_eq!(filtered[0].0, "PROV-ID-create");
    // Shutdown ends the stream instead of hanging on it.
    tokio::time::timeout(Duration::from_secs(10), gw.running.stop())
        .await
        .expect("graceful shutdown with an open event stream")
        .unwrap();
}

/// Read server-sent events until the one of transaction `until_tx` has arrived:
/// (event name, id, data) of each, and the raw text.
async fn read_events(
    stream: &mut reqwest::Response,
    until_tx: &str,
) -> (Vec<(String, String, Value)>, String) {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains(until_tx) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("events arrive within 10 s")
            .unwrap()
            .expect("stream open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let events = text
        .split("\n\n")
        .filter(|block| block.contains("data:"))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            };
            (
                field("event:"),
                field("id:"),
                serde_json::from_str(&field("data:")).unwrap(),
            )
        })
        .collect();
    (events, text)
}

/// Parse the Prometheus text format strictly enough to catch malformed lines.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap();
            assert!(
                matches!(parts.next(), Some("counter" | "gauge" | "histogram")),
                "bad TYPE line {line}"
            );
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "bad labels in {line:?}"
                );
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !v.is_empty(),
                        "{line:?}"
                    );
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| typed.contains(*f))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample {name} has no TYPE line");
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::memory(dir.path()).await;
    let health = gw.raw(Method::GET, "/healthz", None, None).await.ok();
    assert_eq!(health["status"], "ok");
    assert!(
        health.get("ledger").is_none(),
        "liveness names no back end: {health}"
    );
    let ready = gw.raw(Method::GET, "/readyz", None, None).await.ok();
    assert_eq!(ready["status"], "ready");
    populate(&gw).await;
    let text = gw.raw(Method::GET, "/metrics", None, None).await.body;
    let samples = parse_metrics(text.as_str().unwrap());
    assert_eq!(
        samples["tom_http_requests_total{method=\"POST\",route=\"/v1/devices\",status=\"201\"}"],
        1.0
    );
    assert_eq!(samples["tom_ledger_committed_total"], 6.0);
    assert_eq!(
        samples["tom_ledger_submit_seconds_count{function=\"RecordData\"}"],
        1.0
    );
    assert_eq!(
        samples["tom_ledger_submit_seconds_bucket{function=\"RecordData\",le=\"+Inf\"}"],
        1.0
    );
    assert!(samples["tom_ledger_submit_seconds_sum{function=\"RecordData\"}"] > 0.0);
}

/// Every route the router serves is in the spec, and every documented operation is served
/// (answers something other than "no route" / 405).
#[tokio::test]
async fn every_route_is_documented_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::memory(dir.path()).await;
    let spec = gw.raw(Method::GET, "/openapi.json", None, None).await.ok();
    assert_eq!(spec["openapi"], "3.0.3");
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} documents its responses"
            );
        }
    }
    let routed: BTreeSet<(String, String)> = tom_gateway::api::ROUTES
        .iter()
        .map(|r| (r.method.to_uppercase(), r.path.to_owned()))
        .collect();
    assert_eq!(
        documented, routed,
        "the spec and the router's route table agree"
    );
    let required = [
        ("POST", "/v1/orgs"),
        ("POST", "/v1/devices"),
        ("DELETE", "/v1/devices/{id}"),
        ("POST", "/v1/containers"),
        ("DELETE", "/v1/containers/{id}"),
        ("POST", "/v1/placements"),
        ("POST", "/v1/contracts"),
        ("POST", "/v1/data"),
        ("POST", "/v1/executions"),
        ("GET", "/v1/entities/{id}"),
        ("GET", "/v1/entities/{id}/history"),
        ("GET", "/v1/lineage/{id}"),
        ("GET", "/v1/prov/{id}"),
        ("GET", "/v1/records"),
        ("GET", "/v1/events"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ];
    for (method, path) in required {
        assert!(
            routed.contains(&(method.to_owned(), path.to_owned())),
            "the issue's route {method} {path} is served"
        );
    }
    for (method, path) in &documented {
        if path == "/v1/events" {
            continue; // a stream; covered by its own test
        }
        let concrete = path.replace("{id}", "x1");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = (method == Method::POST).then(|| json!({}));
        let reply = gw.call(method.clone(), &concrete, "auditor", body).await;
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let routed_here = reply
            .body
            .get("error")
            .and_then(Value::as_str)
            .is_none_or(|e| !e.starts_with("no route"));
        assert!(routed_here, "{method} {path} is served: {}", reply.body);
    }
}

#[tokio::test]
async fn a_restart_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let ledger_dir = dir.path().join("ledger");
    let acknowledged: Vec<String> = {
        let ledger =
            Arc::new(EmbeddedLedger::open(&ledger_dir, EmbeddedOptions::default()).unwrap());
        let gw = Gw::start(dir.path(), ledger.clone()).await;
        let mut acks: Vec<String> = populate(&gw)
            .await
            .values()
            .map(|c| c["tx_id"].as_str().unwrap().to_owned())
            .collect();
        // Concurrent writes too: each acknowledged one must survive.
        let writes = (0..16).map(|i| {
            let gw = &gw;
            async move {
                gw.post(
                    "/v1/data",
                    "light",
                    record_data(
                        &format!("count-{}", i + 2),
                        "count",
                        "light-1",
                        "traffic-light-1",
                        &[],
                    ),
                )
                .await
                .ok()
            }
        });
        for c in futures::future::join_all(writes).await {
            acks.push(c["tx_id"].as_str().unwrap().to_owned());
        }
        gw.running.stop().await.unwrap();
        ledger.shutdown();
        acks
    };
    let ledger = Arc::new(EmbeddedLedger::open(&ledger_dir, EmbeddedOptions::default()).unwrap());
    let gw = Gw::start(dir.path(), ledger).await;
    let page = gw.get("/v1/records?page_size=1000", "auditor").await.ok();
    let stored: BTreeSet<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tx_id"].as_str().unwrap())
        .collect();
    assert_eq!(acknowledged.len(), 22);
    for tx in &acknowledged {
        assert!(
            stored.contains(tx.as_str()),
            "acknowledged tx {tx} survived the restart"
        );
        assert_eq!(
            gw.get(&format!("/v1/transactions/{tx}"), "auditor")
                .await
                .status,
            StatusCode::OK
        );
    }
    // And the state behind them: the restarted gateway continues where it stopped.
    assert_eq!(
        gw.get("/v1/entities/count-17", "auditor").await.ok()["type"],
        "data"
    );
    gw.post(
        "/v1/executions",
        "orchestrator",
        json!({ "contract_id": "analyse", "data_id": "count-17" }),
    )
    .await
    .ok();
    let dup = gw
        .post(
            "/v1/devices",
            "orchestrator",
            identify_device("light-9", "traffic-light-1", "n-1"),
        )
        .await;
    assert_eq!(
        dup.status,
        StatusCode::FORBIDDEN,
        "the nonce used before the restart is still spent: {}",
        dup.body
    );
    assert!(dup.error().contains("was used already"), "{}", dup.error());
}

/// The served document is valid OpenAPI 3.0 according to an independent validator.
#[tokio::test]
async fn the_openapi_document_passes_an_independent_validator() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::memory(dir.path()).await;
    let spec = gw.raw(Method::GET, "/openapi.json", None, None).await.ok();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let script = "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))\nprint('valid')";
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to validate the OpenAPI document ({e}); run scripts/setup/06-openapi-validator.sh"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'openapi_spec_validator'"),
        "the validator is not installed: run scripts/setup/06-openapi-validator.sh"
    );
    assert!(
        output.status.success(),
        "/openapi.json is not valid OpenAPI 3:\n{stderr}"
    );
}

/// An orchestrator behind the seam: places by submitting PLACE then reporting the outcome, and
/// fails every removal after its TERMINATE committed.
struct FakeOrchestrator;

#[async_trait::async_trait]
impl tom_gateway::api::actions::ContainerActions for FakeOrchestrator {
    async fn identify_device(
        &self,
        ledger: &Arc<dyn Ledger>,
        caller: &SigningIdentity,
        request: &tom_contract::requests::IdentifyDevice,
        node_id: Option<&str>,
    ) -> Result<tom_gateway::api::actions::ActionReport, tom_gateway::api::actions::ActionError>
    {
        let authorising = ledger
            .submit(
                caller,
                "IdentifyDevice",
                &serde_json::to_vec(request).unwrap(),
            )
            .await?;
        Ok(tom_gateway::api::actions::ActionReport {
            authorising,
            outcome: None,
            detail: node_id.map(|n| format!("bound to node {n}")),
        })
    }

    async fn place(
        &self,
        ledger: &Arc<dyn Ledger>,
        caller: &SigningIdentity,
        request: &tom_contract::requests::PlaceContainer,
    ) -> Result<tom_gateway::api::actions::ActionReport, tom_gateway::api::actions::ActionError>
    {
        let authorising = ledger
            .submit(
                caller,
                "PlaceContainer",
                &serde_json::to_vec(request).unwrap(),
            )
            .await?;
        let outcome = json!({ "container_id": request.container_id, "action": "place", "authorising_tx": authorising.tx_id, "outcome": "running", "detail": "service svc-1" });
        let outcome = ledger
            .submit(caller, "RecordOutcome", outcome.to_string().as_bytes())
            .await?;
        Ok(tom_gateway::api::actions::ActionReport {
            authorising,
            outcome: Some(outcome),
            detail: Some("service svc-1".into()),
        })
    }

    async fn terminate(
        &self,
        ledger: &Arc<dyn Ledger>,
        caller: &SigningIdentity,
        request: &tom_contract::requests::TerminateEntity,
    ) -> Result<tom_gateway::api::actions::ActionReport, tom_gateway::api::actions::ActionError>
    {
        let authorising = ledger
            .submit(
                caller,
                "TerminateContainer",
                &serde_json::to_vec(request).unwrap(),
            )
            .await?;
        Err(tom_gateway::api::actions::ActionError::Orchestrator(
            format!(
                "removing the service failed after tx {}; recorded as failed",
                authorising.tx_id
            ),
        ))
    }

    fn describe(&self) -> String {
        "fake orchestrator".into()
    }
}

#[tokio::test]
async fn placements_and_removals_go_through_the_container_actions_seam() {
    let dir = tempfile::tempdir().unwrap();
    let store = install_identities(dir.path());
    let state = AppState::new(Arc::new(InMemoryLedger::new()), store)
        .with_actions(Arc::new(FakeOrchestrator));
    let gw = Gw {
        running: app::spawn("127.0.0.1:0", state).await.unwrap(),
        http: reqwest::Client::new(),
    };
    assert_eq!(
        gw.raw(Method::GET, "/readyz", None, None).await.ok()["orchestrator"],
        "fake orchestrator"
    );
    gw.post("/v1/orgs", "admin", register_org1()).await.ok();
    let mut device = identify_device("light-1", "traffic-light-1", "n-1");
    device["node_id"] = json!("node-a");
    let joined = gw.post("/v1/devices", "orchestrator", device).await.ok();
    assert_eq!(
        joined["detail"], "bound to node node-a",
        "node_id reaches the orchestrator"
    );
    let container = json!({ "container_id": "analyser", "org": "Org1MSP", "image": "city/analyser:1", "digest": sha256(b"image") });
    gw.post("/v1/containers", "orchestrator", container)
        .await
        .ok();
    let placed = gw
        .post(
            "/v1/placements",
            "orchestrator",
            json!({ "container_id": "analyser", "device_id": "light-1" }),
        )
        .await
        .ok();
    assert_eq!(placed["record"]["kind"], "ORCHESTRATE");
    assert_eq!(placed["outcome"]["record"]["kind"], "OUTCOME");
    assert_eq!(
        placed["outcome"]["record"]["body"]["authorising_tx"],
        placed["tx_id"]
    );
    assert_eq!(placed["detail"], "service svc-1");
    assert_eq!(
        gw.get("/v1/entities/analyser", "auditor").await.ok()["placement"]["status"],
        "running"
    );
    let failed = gw
        .call(
            Method::DELETE,
            "/v1/containers/analyser",
            "orchestrator",
            None,
        )
        .await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{}", failed.body);
    assert!(
        failed
            .error()
            .starts_with("orchestrator: removing the service failed after tx"),
        "{}",
        failed.error()
    );
    // A refused authorising transaction never reaches the orchestrator: the contract's 4xx.
    let refused = gw
        .post(
            "/v1/placements",
            "orchestrator",
            json!({ "container_id": "ghost", "device_id": "light-1" }),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
}

/// Issue 11: inventory lists with filters and paging, bookmarks passed back in the URL.
#[tokio::test]
async fn inventory_lists_devices_containers_and_contracts() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::memory(dir.path()).await;
    populate(&gw).await;
    let devices = gw
        .get("/v1/devices?org=Org1MSP&state=joined", "auditor")
        .await
        .ok();
    assert_eq!(devices["items"][0]["id"], "light-1", "{devices}");
    assert_eq!(devices["bookmark"], "");
    let none = gw.get("/v1/devices?state=left", "auditor").await.ok();
    assert_eq!(none["items"], json!([]));
    let on = gw
        .get("/v1/containers?device=light-1", "auditor")
        .await
        .ok();
    assert_eq!(on["items"][0]["id"], "analyser", "{on}");
    let active = gw.get("/v1/contracts?state=active", "auditor").await.ok();
    assert_eq!(active["items"][0]["id"], "analyse", "{active}");
    assert_eq!(active["items"][0]["effective_state"], "active");
    // Paging: one at a time, the bookmark straight into the next URL.
    let mut seen = Vec::new();
    let mut path = "/v1/records?page_size=1".to_owned();
    loop {
        let page = gw.get(&path, "auditor").await.ok();
        seen.extend(
            page["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["tx_id"].clone()),
        );
        let bookmark = page["bookmark"].as_str().unwrap();
        if bookmark.is_empty() {
            break;
        }
        path = format!("/v1/records?page_size=1&bookmark={bookmark}");
    }
    assert_eq!(seen.len(), gw.record_count().await);
    // Bad filters are 400s.
    let r = gw.get("/v1/devices?state=asleep", "auditor").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.error());
    let r = gw.get("/v1/records?bookmark=%00", "auditor").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.error());
}

/// Issue 11: a consumer that disconnects during a burst and reconnects with `Last-Event-ID`
/// sees every record exactly once, in commit order, on the embedded and in-memory ledgers.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_resumes_after_a_disconnect_without_loss_or_duplicates() {
    for embedded in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let ledger: Arc<dyn Ledger> = if embedded {
            Arc::new(
                EmbeddedLedger::open(&dir.path().join("ledger"), EmbeddedOptions::default())
                    .unwrap(),
            )
        } else {
            Arc::new(InMemoryLedger::new())
        };
        let gw = Arc::new(Gw::start(dir.path(), ledger).await);
        let open = |after: Option<String>| {
            let gw = gw.clone();
            async move {
                let mut request = gw
                    .http
                    .get(gw.url("/v1/events"))
                    .bearer_auth(token("auditor"));
                if let Some(id) = after {
                    request = request.header("Last-Event-ID", id);
                }
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                response
            }
        };
        let mut watcher = open(None).await;
        let mut consumer = open(None).await;
        gw.post("/v1/orgs", "admin", register_org1()).await.ok();
        const N: usize = 40;
        let burst = {
            let gw = gw.clone();
            tokio::spawn(async move {
                let mut writes = Vec::new();
                for i in 0..N {
                    let gw = gw.clone();
                    writes.push(tokio::spawn(async move {
                        let body = json!({ "container_id": format!("c-{i}"), "org": "Org1MSP", "image": "city/worker:1", "digest": sha256(b"image") });
                        gw.post("/v1/containers", "orchestrator", body).await.ok()
                    }));
                    if i % 4 == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                let mut txs = Vec::new();
                for w in writes {
                    txs.push(w.await.unwrap()["tx_id"].as_str().unwrap().to_owned());
                }
                txs
            })
        };
        // Read a few events of the burst, then hang up mid-burst.
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut text = String::new();
        while seen.len() < 5 {
            let chunk = consumer.chunk().await.unwrap().expect("stream open");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id:")) {
                    let name = block
                        .lines()
                        .find_map(|l| l.strip_prefix("event:"))
                        .unwrap_or_default();
                    seen.push((name.trim().to_owned(), id.trim().to_owned()));
                }
            }
        }
        drop(consumer);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let last = seen.last().unwrap().1.clone();
        let mut resumed = open(Some(last)).await;
        let txs = burst.await.unwrap();
        // The watcher never hung up: its order is the commit order.
        let (watched, _) = read_until_all(&mut watcher, &txs).await;
        let watched: Vec<String> = watched.into_iter().map(|(_, id)| id).collect();
        let final_id = watched.last().unwrap().clone();
        let final_tx = final_id.split_once('.').unwrap().1.to_owned();
        let (rest, _) = read_events(&mut resumed, &final_tx).await;
        let mut got: Vec<String> = seen.iter().map(|(_, id)| id.clone()).collect();
        got.extend(rest.iter().map(|(_, id, _)| id.clone()));
        assert_eq!(got, watched, "embedded={embedded}");
        let unique: BTreeSet<&String> = got.iter().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "no duplicates (embedded={embedded})"
        );
        for tx in &txs {
            assert!(
                got.iter().any(|id| id.ends_with(&format!(".{tx}"))),
                "{tx} missing (embedded={embedded})"
            );
        }
        // Block numbers never go backwards.
        let blocks: Vec<u64> = got
            .iter()
            .map(|id| id.split('.').next().unwrap().parse().unwrap())
            .collect();
        assert!(blocks.windows(2).all(|w| w[0] <= w[1]), "{blocks:?}");
        // A malformed or unknown id is a 400.
        let r = gw.get("/v1/events?after=nonsense", "auditor").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.error());
        let r = gw.get("/v1/events?after=999999.abc", "auditor").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.error());
    }
}

/// Read events until every transaction of `txs` has arrived: (event name, id) of each.
async fn read_until_all(
    stream: &mut reqwest::Response,
    txs: &[String],
) -> (Vec<(String, String)>, String) {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !txs.iter().all(|tx| text.contains(&format!(".{tx}\n"))) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("events arrive within 20 s")
            .unwrap()
            .expect("stream open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let events = text
        .split("\n\n")
        .filter(|block| block.contains("id:"))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            };
            (field("event:"), field("id:"))
        })
        .collect();
    (events, text)
}
