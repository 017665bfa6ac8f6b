//! `GET /v1/lineage/{id}` and `/v1/prov/{id}` with `limit`, `fan_out` and `bookmark`: a wide
//! lineage comes back in bounded parts that say they are partial, the bookmarks continue it
//! to the end, and out-of-bounds parameters are a 400 naming the parameter.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tom_gateway::app::{self, AppState, Running};
use tom_gateway::identities::IdentityStore;
use tom_gateway::ledger::memory::InMemoryLedger;

const CALLERS: &[(&str, &str, &str)] = &[
    ("admin", "org1", "admin"),
    ("orchestrator", "org1", "orchestrator"),
    ("auditor", "org1", "auditor"),
    ("light", "org1", "traffic-light-1"),
];

fn token(name: &str) -> String {
    format!("test-token-for-{name}")
}

struct Gw {
    running: Running,
    http: reqwest::Client,
}

impl Gw {
    async fn start(dir: &Path) -> Gw {
        let mut store = IdentityStore::open(dir).unwrap();
        for (name, org, fixture) in CALLERS {
            let f = tom_fixtures::identity(org, fixture);
            store
                .add(name, f.msp_id, f.cert_pem, f.key_pkcs8_pem)
                .unwrap();
            store.add_token(name, &token(name)).unwrap();
        }
        let store = IdentityStore::open(dir).unwrap();
        let running = app::spawn(
            "127.0.0.1:0",
            AppState::new(Arc::new(InMemoryLedger::new()), store),
        )
        .await
        .unwrap();
        Gw {
            running,
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        get: bool,
        path: &str,
        who: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.running.url());
        let request = if get {
            self.http.get(url)
        } else {
            self.http.post(url).json(&body.unwrap_or(Value::Null))
        };
        let response = request.bearer_auth(token(who)).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(true, path, "auditor", None).await
    }

    async fn post(&self, path: &str, who: &str, body: Value) {
        let (status, reply) = self.call(false, path, who, Some(body)).await;
        assert!(status.is_success(), "{path}: {status} {reply}");
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
    )
}

/// A traffic light that generated `n` counts.
async fn populate(gw: &Gw, n: usize) {
    let org = tom_fixtures::org("org1");
    gw.post(
        "/v1/orgs",
        "admin",
        json!({ "msp_id": org.msp_id, "ca_certificates": [org.ca_cert_pem] }),
    )
    .await;
    let f = tom_fixtures::identity("org1", "traffic-light-1");
    let device = tom_contract::requests::IdentifyDevice::signed(
        "light-1",
        f.msp_id,
        "sensor",
        f.cert_pem,
        "n-1",
        tom_contract::simulation::DEFAULT_CHANNEL,
        |m| f.sign(m),
    )
    .unwrap();
    gw.post(
        "/v1/devices",
        "orchestrator",
        serde_json::to_value(device).unwrap(),
    )
    .await;
    for i in 0..n {
        let id = format!("count-{i}");
        let request = tom_contract::requests::RecordData {
            data_id: id.clone(),
            kind: "count".into(),
            hash: sha256(id.as_bytes()),
            size: 12,
            location: format!("file:///data/{id}"),
            generated_by: "light-1".into(),
            derived_from: Vec::new(),
            claim: Default::default(),
        }
        .sign(tom_contract::simulation::DEFAULT_CHANNEL, "", |m| f.sign(m))
        .unwrap();
        gw.post("/v1/data", "light", serde_json::to_value(request).unwrap())
            .await;
    }
}

fn data_nodes(lineage: &Value) -> BTreeSet<String> {
    lineage["nodes"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, n)| n["entity"]["type"] == "data")
        .map(|(id, _)| id.clone())
        .collect()
}

#[tokio::test]
async fn lineage_and_prov_take_limit_fan_out_and_bookmark() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(dir.path()).await;
    populate(&gw, 7).await;

    // The whole lineage, for comparison: not truncated, no bookmark.
    let (status, whole) = gw.get("/v1/lineage/light-1?direction=down").await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    assert!(whole.get("truncated").is_none() && whole.get("bookmark").is_none());
    assert_eq!(data_nodes(&whole).len(), 7);

    // Two counts followed per part; the bookmark (URL-encoded as any client would) continues it.
    let mut seen = BTreeSet::new();
    let mut generated = BTreeSet::new();
    let mut path = "/v1/lineage/light-1?direction=down&fan_out=2&limit=50".to_owned();
    let mut parts = 0;
    loop {
        let (status, part) = gw.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{part}");
        parts += 1;
        seen.extend(data_nodes(&part));
        // Each count's generation is walked in exactly one part.
        for r in part["relations"].as_array().unwrap() {
            if r["relation"] == "wasGeneratedBy" {
                assert!(generated.insert(r["from"].to_string()), "{r} again");
            }
        }
        let Some(bookmark) = part["bookmark"].as_str() else {
            assert!(part.get("truncated").is_none());
            break;
        };
        assert_eq!(part["truncated"], true);
        path = format!(
            "/v1/lineage/light-1?direction=down&fan_out=2&limit=50&bookmark={}",
            url_encode(bookmark)
        );
        assert!(parts < 10, "paging does not end");
    }
    assert_eq!(seen, data_nodes(&whole));
    assert_eq!(generated.len(), 7);
    assert!(parts >= 4, "{parts} parts");

    // `limit` bounds the nodes of one answer.
    let (_, small) = gw.get("/v1/lineage/light-1?direction=down&limit=6").await;
    assert!(small["nodes"].as_object().unwrap().len() <= 6, "{small}");
    assert_eq!(small["truncated"], true);

    // The PROV document of a part says it is one.
    let (status, prov) = gw.get("/v1/prov/light-1?direction=down&fan_out=2").await;
    assert_eq!(status, StatusCode::OK, "{prov}");
    let marker = &prov["entity"]["tom:lineage.light-1"];
    assert_eq!(marker["tom:truncated"], true, "{prov:#}");
    assert!(!marker["tom:bookmark"].as_str().unwrap().is_empty());
    let (_, whole_prov) = gw.get("/v1/prov/light-1?direction=down").await;
    assert!(whole_prov["entity"].get("tom:lineage.light-1").is_none());

    // Out of bounds: a 400 that names the parameter.
    for (query, needle) in [
        ("fan_out=0", "fan_out"),
        ("fan_out=5000", "fan_out"),
        ("limit=0", "limit"),
        ("limit=2001", "limit"),
        ("limit=many", "limit"),
        ("bookmark=not-a-bookmark", "bookmark"),
        ("bookmark=%FF%FE", "bookmark"),
    ] {
        for base in ["/v1/lineage/light-1", "/v1/prov/light-1"] {
            let (status, reply) = gw.get(&format!("{base}?direction=down&{query}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{base}?{query}: {reply}");
            let error = reply["error"].as_str().unwrap_or_default();
            assert!(error.contains(needle), "{base}?{query}: {error}");
        }
    }
    let long = "A".repeat(tom_contract::queries::MAX_LINEAGE_BOOKMARK + 1);
    let (status, reply) = gw
        .get(&format!("/v1/lineage/light-1?bookmark={long}"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("bookmark"),
        "{reply}"
    );
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn the_audit_page_says_a_lineage_is_partial_and_how_to_continue() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(dir.path()).await;
    // One reading more than the default fan-out follows.
    populate(&gw, tom_contract::queries::DEFAULT_FAN_OUT as usize + 1).await;
    let page = |query: &'static str| {
        let url = format!("{}/audit?id=light-1&{query}", gw.running.url());
        let http = gw.http.clone();
        async move {
            let response = http
                .get(url)
                .bearer_auth(token("auditor"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.text().await.unwrap()
        }
    };
    let html = page("direction=down&depth=1").await;
    assert!(
        html.contains("id=\"lineage-truncated\""),
        "no truncation note"
    );
    assert!(
        html.contains("tom audit lineage light-1 --direction down --depth 1 --bookmark "),
        "no continuation command"
    );
    assert!(html.contains("href=\"/v1/lineage/light-1?direction=down&amp;depth=1&amp;bookmark="));
    // Upstream of the device is small and complete: no note.
    let html = page("direction=up").await;
    assert!(!html.contains("lineage-truncated"));
}
