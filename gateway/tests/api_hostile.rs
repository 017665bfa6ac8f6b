//! Hostile input over HTTP: every id that reaches a key or a URL is checked against the one
//! grammar (`tom_contract::ids`) by the gateway before any ledger call and answered 400 naming
//! the field and the rule; repeated JSON keys are refused on every body; bodies and free text are
//! bounded; and the OpenAPI document states all of it.

use std::path::Path;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tom_gateway::app::{self, AppState, Running};
use tom_gateway::identities::IdentityStore;
use tom_gateway::ledger::memory::InMemoryLedger;

const CALLERS: &[(&str, &str, &str)] = &[
    ("admin", "org1", "admin"),
    ("orchestrator", "org1", "orchestrator"),
    ("auditor", "org1", "auditor"),
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
        let gw = Gw {
            running,
            http: reqwest::Client::new(),
        };
        let o = tom_fixtures::org("org1");
        let (status, body) = gw
            .send(
                Method::POST,
                "/v1/orgs",
                "admin",
                Some((
                    "application/json",
                    serde_json::to_vec(
                        &json!({ "msp_id": o.msp_id, "ca_certificates": [o.ca_cert_pem] }),
                    )
                    .unwrap(),
                )),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        gw
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        who: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.running.url()))
            .bearer_auth(token(who));
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, "auditor", None).await
    }

    async fn post_raw(&self, path: &str, json: &[u8]) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            path,
            "orchestrator",
            Some(("application/json", json.to_vec())),
        )
        .await
    }

    async fn record_count(&self) -> usize {
        let (_, page) = self.get("/v1/records?page_size=1000").await;
        page["records"].as_array().unwrap().len()
    }
}

#[track_caller]
fn refused(reply: (StatusCode, Value), status: StatusCode, fragments: &[&str]) {
    let (got, body) = reply;
    assert_eq!(got, status, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    for f in fragments {
        assert!(message.contains(f), "{message:?} should contain {f:?}");
    }
}

#[tokio::test]
async fn reserved_characters_in_path_and_query_ids_are_400_from_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(dir.path()).await;
    // Checked by the gateway itself: the contract's messages start with the function name.
    let id_rule = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$";
    for path in [
        "/v1/transactions/%00",
        "/v1/transactions/a%F4%8F%BF%BF",
        "/v1/entities/a%00b",
        "/v1/entities/a%F4%8F%BF%BF/history",
        "/v1/lineage/%2E%2E%2Ex",
        "/v1/prov/-x",
        "/v1/orgs/a%20b",
    ] {
        let reply = gw.get(path).await;
        refused(reply.clone(), StatusCode::BAD_REQUEST, &["id ", id_rule]);
        assert!(
            !reply.1["error"].as_str().unwrap().starts_with("Get"),
            "{path}"
        );
    }
    refused(
        gw.get("/v1/records?agent=a%F4%8F%BF%BF").await,
        StatusCode::BAD_REQUEST,
        &["agent \"a\\u{10ffff}\"", "<msp id>/<common name>"],
    );
    refused(
        gw.get("/v1/records?entity=%00").await,
        StatusCode::BAD_REQUEST,
        &["entity", id_rule],
    );
    refused(
        gw.get("/v1/records?page_size=5000").await,
        StatusCode::BAD_REQUEST,
        &["page_size", "from 1 to 1000"],
    );
    refused(
        gw.get("/v1/records?entity=a&entity=b").await,
        StatusCode::BAD_REQUEST,
        &["repeated"],
    );
    refused(
        gw.send(
            Method::DELETE,
            "/v1/devices/x%00?reason=r",
            "orchestrator",
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        &["id ", id_rule],
    );
    refused(
        gw.send(
            Method::DELETE,
            "/v1/devices/edge-1?reason=a%1B%5B2J",
            "orchestrator",
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        &["reason contains '\\u{1b}'"],
    );
}

#[tokio::test]
async fn dot_container_ids_repeated_keys_and_oversized_text_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gw::start(dir.path()).await;
    let before = gw.record_count().await;
    let digest = format!("sha256:{}", "a".repeat(64));
    for id in [".", ".."] {
        let body = json!({ "container_id": id, "org": "Org1MSP", "image": "i", "digest": digest });
        refused(
            gw.post_raw("/v1/containers", &serde_json::to_vec(&body).unwrap())
                .await,
            StatusCode::BAD_REQUEST,
            &["container_id", "^[A-Za-z0-9]"],
        );
    }
    for (path, body) in [
        ("/v1/devices", r#"{"device_id":"a","device_id":"b"}"#),
        (
            "/v1/placements",
            r#"{"container_id":"a","device_id":"d","container_id":"b"}"#,
        ),
        (
            "/v1/drifts",
            r#"{"service":"s","description":"d","description":"e"}"#,
        ),
        (
            "/v1/orgs",
            r#"{"msp_id":"Org1MSP","ca_certificates":[],"policy":{"publishers":{"p":"x","p":"y"}}}"#,
        ),
    ] {
        refused(
            gw.post_raw(path, body.as_bytes()).await,
            StatusCode::BAD_REQUEST,
            &["duplicate key"],
        );
    }
    // 900 KB of free text with NUL and ESC: over the body limit.
    let flood = format!("\u{0}\u{1b}{}", "x".repeat(900_000));
    let body = json!({ "service": "s", "description": "d", "action_taken": flood });
    refused(
        gw.post_raw("/v1/drifts", &serde_json::to_vec(&body).unwrap())
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        &["larger than the limit"],
    );
    // Within the body limit but over the field's bound, or with control characters.
    let body = json!({ "service": "s", "description": "d", "action_taken": "x".repeat(100_000) });
    refused(
        gw.post_raw("/v1/drifts", &serde_json::to_vec(&body).unwrap())
            .await,
        StatusCode::BAD_REQUEST,
        &["action_taken is 100000 bytes; at most 1024"],
    );
    let body = json!({ "service": "s", "description": "a\u{0}b" });
    refused(
        gw.post_raw("/v1/drifts", &serde_json::to_vec(&body).unwrap())
            .await,
        StatusCode::BAD_REQUEST,
        &["description contains '\\0'"],
    );
    let body = json!({ "service": "s", "description": "d", "action_taken": null });
    refused(
        gw.send(
            Method::POST,
            "/v1/drifts",
            "orchestrator",
            Some(("text/plain", serde_json::to_vec(&body).unwrap())),
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        &["application/json"],
    );
    assert_eq!(
        gw.record_count().await,
        before,
        "nothing refused was recorded"
    );
    let (status, _) = gw
        .post_raw("/v1/drifts", &serde_json::to_vec(&body).unwrap())
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn the_document_states_the_rules_and_every_answer() {
    let doc = tom_gateway::api::openapi::document();
    let mut constrained = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let what = format!("{method} {path}");
            if op.get("security").is_some() {
                assert!(responses.contains_key("401"), "{what} lacks 401");
            }
            if let Some(body) = op.get("requestBody") {
                // JSON bodies go through the API's extractor; the audit page's sign-in form
                // answers anything it cannot use with its form again (401).
                let codes: &[&str] = if body["content"].get("application/json").is_some() {
                    &["400", "409", "413", "415"]
                } else {
                    &["401", "413"]
                };
                for code in codes {
                    assert!(responses.contains_key(*code), "{what} lacks {code}");
                }
            }
            if op.get("x-tom-contract-function").is_some() && responses.contains_key("201") {
                assert!(responses.contains_key("409"), "{what} lacks 409");
            }
            for p in op["parameters"].as_array().unwrap() {
                let s = &p["schema"];
                let stated = s.get("pattern").is_some()
                    || s.get("maxLength").is_some()
                    || s.get("maximum").is_some()
                    || s.get("enum").is_some();
                assert!(stated, "{what} parameter {} has no rule: {s}", p["name"]);
                constrained += 1;
            }
        }
    }
    assert!(constrained > 15);
    let id = &doc["paths"]["/v1/transactions/{id}"]["get"]["parameters"][0]["schema"];
    assert_eq!(id["pattern"], tom_contract::ids::TX_ID.pattern);
    assert_eq!(id["maxLength"], 128);
    let schemas = &doc["components"]["schemas"];
    // Every string field of every request body has a bound.
    fn check(name: &str, schema: &Value) {
        match schema["type"].as_str() {
            Some("string") => assert!(
                schema.get("maxLength").is_some()
                    || schema.get("enum").is_some()
                    || schema.get("pattern").is_some(),
                "{name}: unbounded string {schema}"
            ),
            Some("array") => {
                assert!(schema.get("maxItems").is_some(), "{name}: unbounded list");
                check(name, &schema["items"]);
            }
            Some("object") => {
                if let Some(props) = schema["properties"].as_object() {
                    for (field, s) in props {
                        check(&format!("{name}.{field}"), s);
                    }
                }
                if let Some(extra) = schema["additionalProperties"].as_object() {
                    assert!(
                        schema.get("maxProperties").is_some(),
                        "{name}: unbounded map"
                    );
                    check(name, &Value::Object(extra.clone()));
                }
            }
            _ => {}
        }
    }
    for body in [
        "RegisterOrg",
        "IdentifyDeviceBody",
        "IdentifyContainer",
        "PlaceContainer",
        "RecordOutcome",
        "RecordDrift",
        "DefineContract",
        "RecordData",
        "ExecContract",
    ] {
        check(body, &schemas[body]);
    }
    assert_eq!(
        schemas["RecordDrift"]["properties"]["action_taken"]["maxLength"],
        1024
    );
}
