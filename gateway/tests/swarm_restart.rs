//! A real crash: `tom serve --swarm` (durable embedded ledger, redb journal) is killed with
//! SIGKILL between authorising a placement and creating its service, then started again on the
//! same data directory. The restart resolves the open action before serving: the placement is
//! rolled back and the ledger records it, nothing was started on the swarm, and the container
//! can then be placed and terminated normally.

mod swarm_common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use swarm_common::*;
use tom_gateway::identities::IdentityStore;
use tom_gateway::swarm::SwarmDriver;

struct Gateway {
    child: Child,
    base: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(data: &Path, port: u16, failpoint: Option<&str>, log: &Path) -> Gateway {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tom"));
    command
        .args([
            "serve",
            "--swarm",
            "--reconcile-secs",
            "3600",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .env("RUST_LOG", "info")
        .env_remove(tom_gateway::orchestration::FAILPOINT_ENV)
        .stdout(Stdio::from(
            std::fs::File::create(log.with_extension("out")).unwrap(),
        ))
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    if let Some(step) = failpoint {
        command.env(tom_gateway::orchestration::FAILPOINT_ENV, step);
    }
    let gateway = Gateway {
        child: command.spawn().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let healthz = format!("{}/healthz", gateway.base);
    let up = wait::poll(Duration::from_secs(30), || async {
        http.get(&healthz).send().await.ok().map(|_| ())
    })
    .await;
    assert!(
        up.is_some(),
        "tom serve --swarm did not come up within 30 s: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    gateway
}

async fn call(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_between_authorise_and_create_resolves_the_placement_when_restarted() {
    let swarm = swarm().await;
    let image = workload_image(&swarm).await;
    let node = node_id(&swarm).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gateway");
    let log = dir.path().join("gateway.log");
    let mut tokens = std::collections::BTreeMap::new();
    {
        let mut store = IdentityStore::open(&data).unwrap();
        for name in ["admin", "orchestrator"] {
            let id = tom_fixtures::identity("org1", name);
            store
                .add(name, id.msp_id, id.cert_pem, id.key_pkcs8_pem)
                .unwrap();
            let token = unique(&format!("token-{name}-0123456789"));
            store.add_token(name, &token).unwrap();
            tokens.insert(name, token);
        }
    }
    let (admin, orchestrator) = (tokens["admin"].clone(), tokens["orchestrator"].clone());
    let port = free_port();
    let gateway = start(&data, port, Some("authorised"), &log).await;
    let base = gateway.base.clone();

    let org = tom_fixtures::org("org1");
    let (status, answer) = call(
        &base,
        &admin,
        reqwest::Method::POST,
        "/v1/orgs",
        Some(json!({ "msp_id": org.msp_id, "ca_certificates": [org.ca_cert_pem] })),
    )
    .await;
    assert!(status.is_success(), "{answer}");
    let device = tom_fixtures::identity("org1", DEVICE);
    let nonce = unique("nonce");
    let mut body = serde_json::to_value(
        tom_contract::requests::IdentifyDevice::signed(
            DEVICE,
            device.msp_id,
            "edge-node",
            device.cert_pem,
            &nonce,
            tom_contract::simulation::DEFAULT_CHANNEL,
            |m| device.sign(m),
        )
        .unwrap(),
    )
    .unwrap();
    body["node_id"] = json!(node);
    let (status, answer) = call(
        &base,
        &orchestrator,
        reqwest::Method::POST,
        "/v1/devices",
        Some(body),
    )
    .await;
    assert!(status.is_success(), "{answer}");
    let container = unique("restart");
    let (status, answer) = call(
        &base,
        &orchestrator,
        reqwest::Method::POST,
        "/v1/containers",
        Some(
            json!({ "container_id": container, "org": "Org1MSP", "image": IMAGE, "digest": image }),
        ),
    )
    .await;
    assert!(status.is_success(), "{answer}");

    // The placement request hangs at the failpoint, right after PLACE committed.
    let placing = {
        let (base, token, c) = (base.clone(), orchestrator.clone(), container.clone());
        tokio::spawn(async move {
            call(
                &base,
                &token,
                reqwest::Method::POST,
                "/v1/placements",
                Some(json!({ "container_id": c, "device_id": DEVICE })),
            )
            .await
        })
    };
    wait::until_true("PLACE committed", Duration::from_secs(30), || async {
        let (_, entity) = call(
            &base,
            &orchestrator,
            reqwest::Method::GET,
            &format!("/v1/entities/{container}"),
            None,
        )
        .await;
        entity["placement"]["status"] == "authorised"
    })
    .await;
    // The gateway journals the step, then reaches the failpoint and says so in its log: only
    // then is it killed, so the crash falls exactly between authorising and creating.
    wait::until_true(
        "the gateway frozen at its failpoint",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("failpoint reached: freezing this action")
        },
    )
    .await;
    drop(gateway); // SIGKILL
    let _ = placing.await;
    assert!(
        !swarm
            .tom_services()
            .await
            .unwrap()
            .iter()
            .any(|s| s.container_id() == Some(container.as_str())),
        "no service was created before the crash"
    );

    // Restart on the same data directory: recovery runs before the gateway serves.
    let gateway = start(&data, port, None, &log).await;
    let (_, entity) = call(
        &gateway.base,
        &orchestrator,
        reqwest::Method::GET,
        &format!("/v1/entities/{container}"),
        None,
    )
    .await;
    assert!(
        entity["placement"].is_null(),
        "the ledger no longer claims the placement: {entity}"
    );
    let detail = entity["last_failed_placement"]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(
        detail.contains("rolled back after a gateway restart"),
        "{entity}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("resolved an action left open by the previous run"),
        "{logged}"
    );

    // Afterwards the container is placed and terminated normally through the restarted gateway.
    let (status, placed) = call(
        &gateway.base,
        &orchestrator,
        reqwest::Method::POST,
        "/v1/placements",
        Some(json!({ "container_id": container, "device_id": DEVICE })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["outcome"]["record"]["body"]["outcome"], "running");
    let (status, removed) = call(
        &gateway.base,
        &orchestrator,
        reqwest::Method::DELETE,
        &format!("/v1/containers/{container}"),
        None,
    )
    .await;
    assert!(status.is_success(), "{removed}");
    assert!(!swarm
        .tom_services()
        .await
        .unwrap()
        .iter()
        .any(|s| s.container_id() == Some(container.as_str())));
}
