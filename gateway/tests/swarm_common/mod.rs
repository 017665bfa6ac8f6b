//! Shared set-up for the tests that drive the real swarm: a reachable engine that is a swarm
//! manager (scripts/setup/20-docker-swarm.sh), the workload image (scripts/setup/40-test-images.sh),
//! a ledger with org1 registered and the test device joined, and the node bound to the device.
//! Missing prerequisites fail the test with a message saying what to run; nothing is skipped.

#![allow(dead_code)]

#[path = "../wait/mod.rs"]
pub mod wait;

use std::sync::Arc;

use tom_contract::requests;
use tom_gateway::ledger::memory::InMemoryLedger;
use tom_gateway::ledger::{Ledger, SigningIdentity};
use tom_gateway::orchestration::{Journal, Orchestrator, OrchestratorConfig};
use tom_gateway::swarm::docker::BollardSwarm;
use tom_gateway::swarm::{SwarmDriver, LABEL_DEVICE};

/// The device every swarm test binds the (single) node to.
pub const DEVICE: &str = "edge-node-1";
pub const IMAGE: &str = "tom-workload:test";

pub async fn swarm() -> Arc<BollardSwarm> {
    match BollardSwarm::connect().await {
        Ok(swarm) => Arc::new(swarm),
        Err(e) => panic!(
            "these tests need a reachable Docker engine that is a swarm manager, and found none: {e}\n\
             run scripts/setup/20-docker-swarm.sh (or the README's test command) first"
        ),
    }
}

/// The workload image's id (`sha256:…`), which is also the digest the ledger records.
pub async fn workload_image(swarm: &BollardSwarm) -> String {
    match swarm.image_id(IMAGE).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            panic!("the test image {IMAGE} is missing: run scripts/setup/40-test-images.sh first")
        }
        Err(e) => panic!("cannot inspect {IMAGE}: {e}"),
    }
}

pub fn identity(org: &str, name: &str) -> SigningIdentity {
    let id = tom_fixtures::identity(org, name);
    SigningIdentity::from_pem(id.msp_id, id.cert_pem, id.key_pkcs8_pem).unwrap()
}

pub fn orchestrator_identity() -> SigningIdentity {
    identity("org1", "orchestrator")
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 4];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    format!("{prefix}-{}", hex::encode(bytes))
}

pub async fn submit(
    ledger: &dyn Ledger,
    who: &SigningIdentity,
    function: &str,
    request: serde_json::Value,
) -> String {
    ledger
        .submit(who, function, request.to_string().as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{function} {request}: {e}"))
        .tx_id
}

pub async fn evaluate(
    ledger: &dyn Ledger,
    function: &str,
    request: serde_json::Value,
) -> serde_json::Value {
    let bytes = ledger
        .evaluate(
            &orchestrator_identity(),
            function,
            request.to_string().as_bytes(),
        )
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub async fn entity(ledger: &dyn Ledger, id: &str) -> serde_json::Value {
    evaluate(ledger, "GetEntity", serde_json::json!({ "id": id })).await
}

pub async fn record(ledger: &dyn Ledger, tx: &str) -> serde_json::Value {
    evaluate(ledger, "GetRecord", serde_json::json!({ "id": tx })).await
}

pub async fn register_org(ledger: &dyn Ledger, org: &str) {
    register_org_with_policy(ledger, org, serde_json::json!({})).await;
}

/// Register `org` with `policy` (its consents to other organisations).
pub async fn register_org_with_policy(ledger: &dyn Ledger, org: &str, policy: serde_json::Value) {
    let fixture = tom_fixtures::org(org);
    let request = serde_json::json!({ "msp_id": fixture.msp_id, "ca_certificates": [fixture.ca_cert_pem], "policy": policy });
    submit(ledger, &identity(org, "admin"), "RegisterOrg", request).await;
}

/// A device joins with its id-proof (certificate + signed nonce), as `POST /v1/devices` does it.
pub async fn identify_device(ledger: &dyn Ledger, org: &str, name: &str, kind: &str) -> String {
    let device = tom_fixtures::identity(org, name);
    let nonce = unique("nonce");
    let request = requests::IdentifyDevice::signed(
        name,
        device.msp_id,
        kind,
        device.cert_pem,
        &nonce,
        tom_contract::simulation::DEFAULT_CHANNEL,
        |m| device.sign(m),
    )
    .unwrap();
    let request = serde_json::to_value(request).unwrap();
    submit(ledger, &orchestrator_identity(), "IdentifyDevice", request).await
}

pub async fn identify_container(
    ledger: &dyn Ledger,
    id: &str,
    digest: &str,
    workload: Option<(&str, &str)>,
) -> String {
    let mut request = serde_json::json!({ "container_id": id, "org": "Org1MSP", "image": IMAGE, "digest": digest });
    if let Some((org, name)) = workload {
        request = with_workload_identity(request, tom_fixtures::identity(org, name));
    }
    submit(
        ledger,
        &orchestrator_identity(),
        "IdentifyContainer",
        request,
    )
    .await
}

/// `request` (an IdentifyContainer body) with `workload`'s certificate and its proof of
/// possession, signed by the workload key for the default channel.
pub fn with_workload_identity(
    request: serde_json::Value,
    workload: &tom_fixtures::Identity,
) -> serde_json::Value {
    let container: requests::IdentifyContainer = serde_json::from_value(request).unwrap();
    let container = container
        .with_workload_identity(
            workload.cert_pem,
            &unique("nonce"),
            tom_contract::simulation::DEFAULT_CHANNEL,
            |m| workload.sign(m),
        )
        .unwrap();
    serde_json::to_value(container).unwrap()
}

/// A fresh in-memory ledger with org1 registered and the test device joined.
pub async fn ledger() -> Arc<InMemoryLedger> {
    let ledger = Arc::new(InMemoryLedger::new());
    register_org(ledger.as_ref(), "org1").await;
    identify_device(ledger.as_ref(), "org1", DEVICE, "edge-node").await;
    ledger
}

pub fn config(instance: &str) -> OrchestratorConfig {
    OrchestratorConfig {
        instance: instance.to_owned(),
        run_timeout: std::time::Duration::from_secs(45),
        ..OrchestratorConfig::default()
    }
}

pub fn orchestrator(
    ledger: Arc<dyn Ledger>,
    swarm: Arc<BollardSwarm>,
    journal: &std::path::Path,
    config: OrchestratorConfig,
) -> Orchestrator {
    Orchestrator::new(
        ledger,
        swarm,
        Journal::open(journal).unwrap(),
        orchestrator_identity(),
        config,
    )
}

/// The single node's id.
pub async fn node_id(swarm: &BollardSwarm) -> String {
    let nodes = swarm.nodes().await.unwrap();
    assert_eq!(
        nodes.len(),
        1,
        "the test swarm is expected to have exactly one node: {nodes:?}"
    );
    nodes[0].id.clone()
}

/// Bind the node to [`DEVICE`] (tests in one binary run in parallel: tolerate a concurrent
/// update of the same label to the same value, until the label is there).
pub async fn bind_device(orchestrator: &Orchestrator, swarm: &BollardSwarm) -> String {
    let node = node_id(swarm).await;
    wait::until(
        &format!("swarm node {node} bound to {DEVICE}"),
        std::time::Duration::from_secs(10),
        || async {
            let nodes = swarm.nodes().await.unwrap();
            if nodes[0].labels.get(LABEL_DEVICE).map(String::as_str) == Some(DEVICE) {
                return Some(());
            }
            match orchestrator.bind_node(&node, DEVICE).await {
                Ok(()) => Some(()),
                Err(e) => {
                    eprintln!("binding node (retrying): {e}");
                    None
                }
            }
        },
    )
    .await;
    node
}

/// Remove every service this test's gateway instance created (whatever the test's outcome).
pub async fn remove_instance_services(swarm: &BollardSwarm, instance: &str) {
    for service in swarm.tom_services().await.unwrap_or_default() {
        if service.gateway() == Some(instance) {
            let _ = swarm.remove_service(&service.id).await;
        }
    }
}

/// Removes this gateway instance's services when dropped, so a failing test leaves nothing
/// running on the swarm (the normal path removes them itself).
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(out) = std::process::Command::new("docker")
            .args([
                "service",
                "ls",
                "--quiet",
                "--filter",
                &format!("label={}={}", tom_gateway::swarm::LABEL_GATEWAY, self.0),
            ])
            .output()
        else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = std::process::Command::new("docker")
                .args(["service", "rm", id])
                .output();
        }
    }
}
