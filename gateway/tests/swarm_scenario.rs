//! The smart-city scenario end to end on the real swarm, through the REST API: devices join
//! (the edge node binding the swarm node), containers are identified and placed through
//! `POST /v1/placements`, and the tom-workload containers produce, use and derive signed data
//! through the gateway; the audit's lineage names where each container ran, and the placement
//! outcomes name the swarm node. Then every container is terminated through the API.

mod swarm_common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use swarm_common::*;
use tom_gateway::app::{self, AppState};
use tom_gateway::identities::IdentityStore;
use tom_gateway::orchestration::actions::SwarmActions;
use tom_gateway::orchestration::OrchestratorConfig;
use tom_gateway::swarm::SwarmDriver;

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> Value {
        let (status, answer) = self
            .call(token, reqwest::Method::POST, path, Some(body.clone()))
            .await;
        assert!(
            status.is_success(),
            "POST {path} {body} -> {status}: {answer}"
        );
        answer
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(token, reqwest::Method::GET, path, None).await
    }
}

/// Identities the gateway holds for the scenario's callers, each with a token.
fn identities(
    dir: &Path,
) -> (
    IdentityStore,
    std::collections::BTreeMap<&'static str, String>,
) {
    let mut store = IdentityStore::open(dir).unwrap();
    let mut tokens = std::collections::BTreeMap::new();
    for (org, name) in [
        ("org1", "orchestrator"),
        ("org1", "auditor"),
        ("org1", "traffic-light-1"),
        ("org2", "car-42"),
        ("org1", "collector"),
        ("org1", "analyser"),
    ] {
        let id = tom_fixtures::identity(org, name);
        store
            .add(name, id.msp_id, id.cert_pem, id.key_pkcs8_pem)
            .unwrap();
        let token = format!("token-{name}-{}", unique("t"));
        store.add_token(name, &token).unwrap();
        tokens.insert(name, token);
    }
    (store, tokens)
}

/// The per-container configuration the gateway mounts at /etc/tom: arguments, token, key.
fn workload_config(
    dir: &Path,
    container: &str,
    identity: (&str, &str),
    token: &str,
    args: &[&str],
) {
    let path = dir.join(container);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("args"), args.join("\n")).unwrap();
    std::fs::write(path.join("token"), token).unwrap();
    std::fs::write(
        path.join("key.pem"),
        tom_fixtures::identity(identity.0, identity.1).key_pkcs8_pem,
    )
    .unwrap();
}

fn device_proof(org: &str, name: &str, kind: &str, node_id: Option<&str>) -> Value {
    let device = tom_fixtures::identity(org, name);
    let nonce = unique("nonce");
    let mut body = serde_json::to_value(
        tom_contract::requests::IdentifyDevice::signed(
            name,
            device.msp_id,
            kind,
            device.cert_pem,
            &nonce,
            tom_contract::simulation::DEFAULT_CHANNEL,
            |m| device.sign(m),
        )
        .unwrap(),
    )
    .unwrap();
    if let Some(node) = node_id {
        body["node_id"] = node.into();
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_city_scenario_runs_on_the_swarm_and_the_audit_names_where_each_container_ran() {
    let swarm = swarm().await;
    let image = workload_image(&swarm).await;
    let node = node_id(&swarm).await;
    let instance = unique("t-city");
    let _cleanup = Cleanup(instance.clone());
    let dir = tempfile::tempdir().unwrap();
    let (workloads, data) = (dir.path().join("workloads"), dir.path().join("data"));
    std::fs::create_dir_all(&data).unwrap();

    // The gateway: in-memory ledger, REST app on loopback, Swarm orchestration behind the seam.
    let ledger = Arc::new(tom_gateway::ledger::memory::InMemoryLedger::new());
    register_org(ledger.as_ref(), "org1").await;
    // The mobility provider lets the city identify its car and use the car's data.
    register_org_with_policy(
        ledger.as_ref(),
        "org2",
        json!({ "orchestrators": ["Org1MSP"], "shares_data_with": ["Org1MSP"] }),
    )
    .await;
    let (store, tokens) = identities(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = OrchestratorConfig {
        instance: instance.clone(),
        workloads_dir: Some(workloads.clone()),
        data_dir: Some(data.clone()),
        gateway_url: Some(format!("http://{addr}")),
        run_timeout: Duration::from_secs(60),
        ..OrchestratorConfig::default()
    };
    let orch = Arc::new(orchestrator(
        ledger.clone(),
        swarm.clone(),
        &dir.path().join("journal.redb"),
        config,
    ));
    let state = AppState::new(ledger.clone(), store)
        .with_actions(Arc::new(SwarmActions::new(orch.clone())));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let api = Api {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
    };
    let orchestrator = tokens["orchestrator"].as_str();

    // Devices join; the edge node's proof binds the swarm node to it.
    let joined = api
        .post(
            orchestrator,
            "/v1/devices",
            device_proof("org1", DEVICE, "edge-node", Some(&node)),
        )
        .await;
    assert!(
        joined["detail"].as_str().unwrap().contains(&node),
        "{joined}"
    );
    assert_eq!(swarm.nodes().await.unwrap()[0].device_id(), Some(DEVICE));
    api.post(
        orchestrator,
        "/v1/devices",
        device_proof("org1", "traffic-light-1", "actuator", None),
    )
    .await;
    api.post(
        orchestrator,
        "/v1/devices",
        device_proof("org2", "car-42", "sensor", None),
    )
    .await;

    // Containers join with the workload image's digest (and, for activities, their certificate).
    let containers: [(&str, Option<&str>); 5] = [
        ("collector", Some("collector")),
        ("analyser", Some("analyser")),
        ("actuator-tl1", None),
        ("sensor-tl1", None),
        ("sensor-car42", None),
    ];
    for (id, cert) in containers {
        let mut body =
            json!({ "container_id": id, "org": "Org1MSP", "image": IMAGE, "digest": image });
        if let Some(name) = cert {
            body = with_workload_identity(body, tom_fixtures::identity("org1", name));
        }
        api.post(orchestrator, "/v1/containers", body).await;
    }
    let deadline = tom_contract::Timestamp {
        seconds: tom_gateway::ledger::memory::now().seconds + 3600,
        nanos: 0,
    }
    .to_rfc3339();
    for contract in [
        json!({ "contract_id": "collect-junction-counts", "contractor": "collector", "deadline": deadline,
                "uses": [{ "kind": "vehicle-count", "source": "traffic-light-1" }, { "kind": "vehicle-position", "source": "car-42" }],
                "generates": [{ "kind": "junction-traffic-summary" }] }),
        json!({ "contract_id": "optimise-signal-timing", "contractor": "analyser", "deadline": deadline,
                "uses": [{ "kind": "junction-traffic-summary", "source": "collector" }], "generates": [{ "kind": "signal-timing-plan" }] }),
        json!({ "contract_id": "apply-signal-timing", "contractor": "traffic-light-1", "deadline": deadline,
                "uses": [{ "kind": "signal-timing-plan", "source": "analyser" }], "generates": [{ "kind": "acknowledgement" }] }),
    ] {
        api.post(orchestrator, "/v1/contracts", contract).await;
    }

    // Each workload's configuration, as an operator would lay it out for `tom serve --swarm`.
    workload_config(
        &workloads,
        "sensor-tl1",
        ("org1", "traffic-light-1"),
        &tokens["traffic-light-1"],
        &[
            "--activity",
            "traffic-light-1",
            "sensor",
            "--kind",
            "vehicle-count",
            "--data-id",
            "vc-1",
        ],
    );
    workload_config(
        &workloads,
        "sensor-car42",
        ("org2", "car-42"),
        &tokens["car-42"],
        &[
            "--activity",
            "car-42",
            "sensor",
            "--kind",
            "vehicle-position",
            "--data-id",
            "vp-1",
        ],
    );
    workload_config(
        &workloads,
        "collector",
        ("org1", "collector"),
        &tokens["collector"],
        &[
            "--activity",
            "collector",
            "derive",
            "--contract",
            "collect-junction-counts",
            "--inputs",
            "vc-1,vp-1",
            "--kind",
            "junction-traffic-summary",
            "--data-id",
            "summary-1",
        ],
    );
    workload_config(
        &workloads,
        "analyser",
        ("org1", "analyser"),
        &tokens["analyser"],
        &[
            "--activity",
            "analyser",
            "derive",
            "--contract",
            "optimise-signal-timing",
            "--inputs",
            "summary-1",
            "--kind",
            "signal-timing-plan",
            "--data-id",
            "plan-1",
        ],
    );
    workload_config(
        &workloads,
        "actuator-tl1",
        ("org1", "traffic-light-1"),
        &tokens["traffic-light-1"],
        &[
            "--activity",
            "traffic-light-1",
            "actuate",
            "--contract",
            "apply-signal-timing",
            "--command",
            "plan-1",
            "--data-id",
            "ack-1",
        ],
    );

    // Place everything on the edge node through the API; consumers first, so they wait for data.
    let mut outcomes = std::collections::BTreeMap::new();
    for id in [
        "collector",
        "analyser",
        "actuator-tl1",
        "sensor-tl1",
        "sensor-car42",
    ] {
        let placed = api
            .post(
                orchestrator,
                "/v1/placements",
                json!({ "container_id": id, "device_id": DEVICE }),
            )
            .await;
        assert_eq!(
            placed["outcome"]["record"]["body"]["outcome"], "running",
            "{placed}"
        );
        outcomes.insert(id, placed["outcome"]["tx_id"].as_str().unwrap().to_owned());
    }

    // The workloads do the rest; wait for the actuator's acknowledgement on the ledger.
    let auditor = tokens["auditor"].as_str();
    let acknowledged = wait::poll(Duration::from_secs(120), || async {
        let (status, _) = api.get(auditor, "/v1/entities/ack-1").await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
    if acknowledged.is_none() {
        let mut logs = String::new();
        for service in swarm.tom_services().await.unwrap() {
            let out = std::process::Command::new("docker")
                .args(["service", "logs", "--raw", &service.id])
                .output()
                .unwrap();
            logs.push_str(&format!(
                "--- {}\n{}{}",
                service.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        panic!("the scenario did not finish within 120 s; workload logs:\n{logs}");
    }

    // The off-chain bytes match what the ledger recorded.
    for data_id in ["vc-1", "vp-1", "summary-1", "plan-1", "ack-1"] {
        let (_, entity) = api.get(auditor, &format!("/v1/entities/{data_id}")).await;
        let bytes = std::fs::read(data.join(format!("{data_id}.json"))).unwrap();
        let hash = format!(
            "sha256:{}",
            hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
        );
        assert_eq!(entity["hash"], hash.as_str(), "{data_id}");
    }

    // The audit: the acknowledgement's lineage reaches back to both sensors' readings, through
    // the collector and analyser, each placed on the edge node...
    let (status, lineage) = api
        .get(auditor, "/v1/lineage/ack-1?direction=up&depth=16")
        .await;
    assert_eq!(status, StatusCode::OK, "{lineage}");
    let nodes = lineage["nodes"].as_object().unwrap();
    for id in [
        "vc-1",
        "vp-1",
        "summary-1",
        "plan-1",
        "collector",
        "analyser",
        "traffic-light-1",
        "car-42",
        DEVICE,
    ] {
        assert!(
            nodes.contains_key(id),
            "lineage lacks {id}: {:?}",
            nodes.keys().collect::<Vec<_>>()
        );
    }
    let relations = lineage["relations"].as_array().unwrap();
    let has = |relation: &str, from: &str, to: &str| {
        relations
            .iter()
            .any(|r| r["relation"] == relation && r["from"] == from && r["to"] == to)
    };
    for container in ["collector", "analyser"] {
        assert!(
            has("placedOn", container, DEVICE),
            "{container} placedOn {DEVICE} missing: {relations:?}"
        );
    }
    assert!(
        has("wasDerivedFrom", "summary-1", "vc-1") && has("wasDerivedFrom", "summary-1", "vp-1"),
        "{relations:?}"
    );
    assert_eq!(nodes["summary-1"]["entity"]["host_device"], DEVICE);
    assert_eq!(nodes["plan-1"]["entity"]["host_device"], DEVICE);
    // ...which is the swarm node bound to it, and each placement's recorded outcome names that node.
    assert_eq!(
        swarm
            .nodes()
            .await
            .unwrap()
            .iter()
            .find(|n| n.id == node)
            .unwrap()
            .device_id(),
        Some(DEVICE)
    );
    for container in ["collector", "analyser"] {
        let (_, entity) = api.get(auditor, &format!("/v1/entities/{container}")).await;
        assert_eq!(entity["placement"]["status"], "running");
        let (_, outcome) = api
            .get(
                auditor,
                &format!("/v1/transactions/{}", outcomes[container]),
            )
            .await;
        assert_eq!(
            outcome["body"]["authorising_tx"],
            entity["placement"]["stamp"]["tx_id"]
        );
        assert!(
            outcome["body"]["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("swarm node {node}")),
            "{outcome}"
        );
    }
    for contract in [
        "collect-junction-counts",
        "optimise-signal-timing",
        "apply-signal-timing",
    ] {
        let (_, c) = api.get(auditor, &format!("/v1/entities/{contract}")).await;
        assert_eq!(c["state"], "fulfilled", "{c}");
    }

    // A placement the swarm cannot run answers 502 with the engine's words, and is recorded.
    let ghost_digest = format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            instance.as_bytes()
        ))
    );
    api.post(orchestrator, "/v1/containers", json!({ "container_id": "ghost", "org": "Org1MSP", "image": "ghost:1", "digest": ghost_digest })).await;
    let (status, answer) = api
        .call(
            orchestrator,
            reqwest::Method::POST,
            "/v1/placements",
            Some(json!({ "container_id": "ghost", "device_id": DEVICE })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert!(answer.to_string().contains("No such image"), "{answer}");
    let (_, ghost) = api.get(auditor, "/v1/entities/ghost").await;
    assert!(ghost["placement"].is_null(), "{ghost}");
    assert!(
        ghost["last_failed_placement"]["detail"]
            .as_str()
            .unwrap()
            .contains("No such image"),
        "{ghost}"
    );

    // Terminate everything through the API; the services go and the ledger records it.
    for id in [
        "collector",
        "analyser",
        "actuator-tl1",
        "sensor-tl1",
        "sensor-car42",
    ] {
        let (status, answer) = api
            .call(
                orchestrator,
                reqwest::Method::DELETE,
                &format!("/v1/containers/{id}?reason=scenario%20over"),
                None,
            )
            .await;
        assert!(status.is_success(), "DELETE {id} -> {status}: {answer}");
        assert_eq!(
            answer["outcome"]["record"]["body"]["outcome"], "removed",
            "{answer}"
        );
    }
    assert!(
        !swarm
            .tom_services()
            .await
            .unwrap()
            .iter()
            .any(|s| s.gateway() == Some(instance.as_str())),
        "every scenario service is gone"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    remove_instance_services(&swarm, &instance).await;
}
