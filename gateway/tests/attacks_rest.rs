//! The attacks that once got a forgery recorded, tried again through the REST API against the
//! durable embedded ledger, as an attacker holding a valid token of another organisation would.
//! Each is refused with a status and a message that says why, and nothing is recorded:
//!
//! * a device of Org2 re-posts an Org1 device's signed data claim under a new id, as an alarm
//!   with invented inputs and location;
//! * Org2's orchestrator joins a container carrying a certificate whose key it never proved, or
//!   a certificate that already identifies a device;
//! * Org1's orchestrator places Org2's container on Org2's device and makes both leave.

use std::path::Path;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tom_contract::requests::{IdentifyContainer, IdentifyDevice, RecordData};
use tom_contract::simulation::DEFAULT_CHANNEL;
use tom_gateway::app::{self, AppState, Running};
use tom_gateway::identities::IdentityStore;
use tom_gateway::ledger::embedded::{EmbeddedLedger, EmbeddedOptions};

/// Gateway identity name → fixture identity.
const CALLERS: &[(&str, &str)] = &[
    ("org1", "admin"),
    ("org1", "orchestrator"),
    ("org1", "auditor"),
    ("org1", "traffic-light-1"),
    ("org2", "admin"),
    ("org2", "orchestrator"),
    ("org2", "car-42"),
];

fn caller(org: &str, name: &str) -> String {
    format!("{org}.{name}")
}

struct Gw {
    running: Running,
    http: reqwest::Client,
}

impl Gw {
    async fn start(dir: &Path) -> Gw {
        let mut store = IdentityStore::open(dir).unwrap();
        for (org, name) in CALLERS {
            let f = tom_fixtures::identity(org, name);
            let id = caller(org, name);
            store
                .add(&id, f.msp_id, f.cert_pem, f.key_pkcs8_pem)
                .unwrap();
            store.add_token(&id, &format!("token-{id}")).unwrap();
        }
        let store = IdentityStore::open(dir).unwrap();
        let ledger = Arc::new(
            EmbeddedLedger::open(&dir.join("ledger"), EmbeddedOptions::default()).unwrap(),
        );
        let running = app::spawn("127.0.0.1:0", AppState::new(ledger, store))
            .await
            .unwrap();
        Gw {
            running,
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        who: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.running.url()))
            .bearer_auth(format!("token-{who}"));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, path: &str, who: &str, body: Value) -> Value {
        let (status, answer) = self.call(Method::POST, path, who, Some(&body)).await;
        assert!(
            status.is_success(),
            "POST {path} as {who}: {status} {answer}"
        );
        answer
    }

    async fn record_count(&self) -> usize {
        let (_, page) = self
            .call(
                Method::GET,
                "/v1/records?page_size=500",
                &caller("org1", "auditor"),
                None,
            )
            .await;
        page["records"].as_array().map_or(0, Vec::len)
    }

    /// The call is refused with `status` and a message containing `fragment`; nothing recorded.
    async fn refused(
        &self,
        method: Method,
        path: &str,
        who: &str,
        body: Option<Value>,
        status: StatusCode,
        fragment: &str,
    ) {
        let before = self.record_count().await;
        let (got, answer) = self.call(method.clone(), path, who, body.as_ref()).await;
        assert_eq!(got, status, "{method} {path} as {who}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(fragment),
            "{message:?} should contain {fragment:?}"
        );
        assert_eq!(self.record_count().await, before, "nothing may be recorded");
    }
}

fn device_join(org: &str, name: &str, device_id: &str, nonce: &str) -> Value {
    let f = tom_fixtures::identity(org, name);
    let request = IdentifyDevice::signed(
        device_id,
        f.msp_id,
        "sensor",
        f.cert_pem,
        nonce,
        DEFAULT_CHANNEL,
        |m| f.sign(m),
    )
    .unwrap();
    serde_json::to_value(request).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
    )
}

/// Both organisations registered, with no consent to each other; Org1's traffic light and
/// Org2's car joined by their own orchestrators.
async fn two_organisations(gw: &Gw) {
    for org in ["org1", "org2"] {
        let o = tom_fixtures::org(org);
        gw.ok(
            "/v1/orgs",
            &caller(org, "admin"),
            json!({ "msp_id": o.msp_id, "ca_certificates": [o.ca_cert_pem] }),
        )
        .await;
    }
    gw.ok(
        "/v1/devices",
        &caller("org1", "orchestrator"),
        device_join("org1", "traffic-light-1", "tl-1", "n-tl-1"),
    )
    .await;
    gw.ok(
        "/v1/devices",
        &caller("org2", "orchestrator"),
        device_join("org2", "car-42", "car-42", "n-car-42"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_data_signature_is_refused_and_fulfils_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(dir.path()).await;
    two_organisations(&gw).await;
    let deadline =
        tom_contract::Timestamp::from_seconds(tom_gateway::ledger::memory::now().seconds + 3600)
            .to_rfc3339();
    gw.ok(
        "/v1/contracts",
        &caller("org1", "orchestrator"),
        json!({ "contract_id": "k-alarm", "contractor": "tl-1", "generates": [{ "kind": "alarm" }], "deadline": deadline }),
    )
    .await;
    let light = tom_fixtures::identity("org1", "traffic-light-1");
    let reading = RecordData {
        data_id: "count-1".into(),
        kind: "vehicle-count".into(),
        hash: sha256(b"7 cars"),
        size: 6,
        location: "file:///data/count-1".into(),
        generated_by: "tl-1".into(),
        derived_from: vec![],
        claim: Default::default(),
    }
    .sign(DEFAULT_CHANNEL, "", |m| light.sign(m))
    .unwrap();
    gw.ok(
        "/v1/data",
        &caller("org1", "traffic-light-1"),
        serde_json::to_value(&reading).unwrap(),
    )
    .await;

    // Org2's car re-posts the light's claim as an alarm with invented inputs and location.
    let mut forged = serde_json::to_value(&reading).unwrap();
    forged["data_id"] = json!("alarm-1");
    forged["kind"] = json!("alarm");
    forged["location"] = json!("file:///elsewhere");
    forged["derived_from"] = json!(["count-1"]);
    gw.refused(
        Method::POST,
        "/v1/data",
        &caller("org2", "car-42"),
        Some(forged.clone()),
        StatusCode::FORBIDDEN,
        "Org2MSP/car-42 is not tl-1's identity",
    )
    .await;
    // Org2's orchestrator neither.
    gw.refused(
        Method::POST,
        "/v1/data",
        &caller("org2", "orchestrator"),
        Some(forged.clone()),
        StatusCode::FORBIDDEN,
        "may not record data of generators of organisation Org1MSP",
    )
    .await;
    // The light itself cannot move its own signature onto the alarm either.
    gw.refused(
        Method::POST,
        "/v1/data",
        &caller("org1", "traffic-light-1"),
        Some(forged),
        StatusCode::FORBIDDEN,
        "claim for data alarm-1 was signed for another claim",
    )
    .await;
    let (_, contract) = gw
        .call(
            Method::GET,
            "/v1/entities/k-alarm",
            &caller("org1", "auditor"),
            None,
        )
        .await;
    assert_eq!(
        contract["state"], "active",
        "the forgery fulfilled nothing: {contract}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_cannot_carry_a_certificate_it_never_proved_or_one_bound_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(dir.path()).await;
    two_organisations(&gw).await;
    let container = |org: &str| IdentifyContainer {
        container_id: "spy".into(),
        org: org.into(),
        image: "spy:1".into(),
        digest: sha256(b"spy image"),
        publisher_signature: None,
        certificate: None,
        nonce: None,
        proof: None,
    };
    // A certificate without a proof of possession: refused as unproved.
    let mut bare = serde_json::to_value(container("Org2MSP")).unwrap();
    bare["certificate"] = json!(tom_fixtures::identity("org2", "truck-9").cert_pem);
    gw.refused(
        Method::POST,
        "/v1/containers",
        &caller("org2", "orchestrator"),
        Some(bare),
        StatusCode::BAD_REQUEST,
        "needs its proof of possession",
    )
    .await;
    // For Org1's container Org2's orchestrator has no consent, even with a valid proof.
    let light = tom_fixtures::identity("org1", "traffic-light-1");
    let proved = container("Org1MSP")
        .with_workload_identity(light.cert_pem, "n-spy", DEFAULT_CHANNEL, |m| light.sign(m))
        .unwrap();
    gw.refused(
        Method::POST,
        "/v1/containers",
        &caller("org2", "orchestrator"),
        Some(serde_json::to_value(&proved).unwrap()),
        StatusCode::FORBIDDEN,
        "Org2MSP/orchestrator may not identify containers of organisation Org1MSP",
    )
    .await;
    // Its own organisation cannot give a device's certificate to a container either.
    let car = tom_fixtures::identity("org2", "car-42");
    let rebound = container("Org2MSP")
        .with_workload_identity(car.cert_pem, "n-spy-2", DEFAULT_CHANNEL, |m| car.sign(m))
        .unwrap();
    gw.refused(
        Method::POST,
        "/v1/containers",
        &caller("org2", "orchestrator"),
        Some(serde_json::to_value(&rebound).unwrap()),
        StatusCode::CONFLICT,
        "identifies car-42 already and cannot identify spy",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_container_and_device_are_out_of_reach_without_consent() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(dir.path()).await;
    two_organisations(&gw).await;
    gw.ok(
        "/v1/containers",
        &caller("org2", "orchestrator"),
        json!({ "container_id": "fleet-agent", "org": "Org2MSP", "image": "fleet:1", "digest": sha256(b"fleet") }),
    )
    .await;
    let org1 = caller("org1", "orchestrator");
    gw.refused(
        Method::POST,
        "/v1/placements",
        &org1,
        Some(json!({ "container_id": "fleet-agent", "device_id": "car-42" })),
        StatusCode::FORBIDDEN,
        "Org1MSP/orchestrator may not place containers of organisation Org2MSP",
    )
    .await;
    gw.refused(
        Method::DELETE,
        "/v1/containers/fleet-agent",
        &org1,
        None,
        StatusCode::FORBIDDEN,
        "may not terminate containers of organisation Org2MSP",
    )
    .await;
    gw.refused(
        Method::DELETE,
        "/v1/devices/car-42",
        &org1,
        None,
        StatusCode::FORBIDDEN,
        "may not terminate devices of organisation Org2MSP",
    )
    .await;
    // With Org2's consent on the ledger, the same placement goes through.
    let o2 = tom_fixtures::org("org2");
    gw.ok(
        "/v1/orgs",
        &caller("org2", "admin"),
        json!({ "msp_id": o2.msp_id, "ca_certificates": [o2.ca_cert_pem], "policy": { "orchestrators": ["Org1MSP"] } }),
    )
    .await;
    gw.ok(
        "/v1/placements",
        &org1,
        json!({ "container_id": "fleet-agent", "device_id": "car-42" }),
    )
    .await;
}
