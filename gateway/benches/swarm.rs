//! Placement and termination through TOM's orchestrator versus the same Swarm work done with
//! plain bollard calls, in one run, interleaved so both see the same engine state.
//!
//! Baseline per iteration: create the same service spec, poll its tasks until one runs; then
//! delete it and poll the engine's containers (by Swarm's service-id label, any state) until
//! none is left. TOM per iteration: `Orchestrator::place` (PLACE tx, journal steps, create,
//! poll, outcome tx) then `terminate_container` (leave tx, remove, wait until the containers
//! are gone, outcome tx), on the durable embedded ledger (fsync per block) and, for comparison,
//! the in-memory one. Both poll every 100 ms, so both see the same Swarm work.
//!
//! Run: `cargo bench -p tom-gateway --bench swarm` (needs the engine and image the setup scripts
//! prepare). `TOM_BENCH_ITERATIONS` sets the iterations per variant (default 10).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::ListContainersOptions;
use tom_gateway::ledger::embedded::{EmbeddedLedger, EmbeddedOptions};
use tom_gateway::ledger::memory::InMemoryLedger;
use tom_gateway::ledger::{Ledger, SigningIdentity};
use tom_gateway::orchestration::{Journal, Orchestrator, OrchestratorConfig};
use tom_gateway::swarm::docker::{service_spec, BollardSwarm};
use tom_gateway::swarm::{
    ServiceRequest, SwarmDriver, TaskPhase, LABEL_CONTAINER, LABEL_DEVICE, LABEL_GATEWAY,
};

const DEVICE: &str = "edge-node-1";
const POLL: Duration = Duration::from_millis(100);
const REMOVAL_TIMEOUT: Duration = Duration::from_secs(30);

fn identity(org: &str, name: &str) -> SigningIdentity {
    let id = tom_fixtures::identity(org, name);
    SigningIdentity::from_pem(id.msp_id, id.cert_pem, id.key_pkcs8_pem).expect("fixture identity")
}

async fn submit(
    ledger: &dyn Ledger,
    who: &SigningIdentity,
    function: &str,
    body: serde_json::Value,
) {
    ledger
        .submit(who, function, body.to_string().as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{function}: {e}"));
}

async fn prepare(ledger: &dyn Ledger, image: &str, containers: &[String]) {
    let org = tom_fixtures::org("org1");
    submit(
        ledger,
        &identity("org1", "admin"),
        "RegisterOrg",
        serde_json::json!({ "msp_id": org.msp_id, "ca_certificates": [org.ca_cert_pem] }),
    )
    .await;
    let device = tom_fixtures::identity("org1", DEVICE);
    let nonce = format!("bench-{}", tom_gateway::ledger::memory::now().nanos);
    let request = tom_contract::requests::IdentifyDevice::signed(
        DEVICE,
        device.msp_id,
        "edge-node",
        device.cert_pem,
        &nonce,
        tom_contract::simulation::DEFAULT_CHANNEL,
        |m| device.sign(m),
    )
    .expect("device proof");
    let orchestrator = identity("org1", "orchestrator");
    submit(
        ledger,
        &orchestrator,
        "IdentifyDevice",
        serde_json::to_value(request).expect("json"),
    )
    .await;
    for id in containers {
        submit(ledger, &orchestrator, "IdentifyContainer", serde_json::json!({ "container_id": id, "org": "Org1MSP", "image": "tom-workload:test", "digest": image })).await;
    }
}

/// The same Swarm work with bollard alone: create, wait until running; delete, wait until the
/// engine has no container of the service left.
async fn baseline(
    swarm: &BollardSwarm,
    image: &str,
    name: &str,
    instance: &str,
) -> (Duration, Duration) {
    let request = ServiceRequest {
        name: name.to_owned(),
        image: image.to_owned(),
        device_id: DEVICE.to_owned(),
        labels: BTreeMap::from([
            (LABEL_CONTAINER.to_owned(), name.to_owned()),
            (LABEL_GATEWAY.to_owned(), instance.to_owned()),
        ]),
        args: vec![],
        env: vec![],
        mounts: vec![],
        host_network: true,
    };
    let started = Instant::now();
    let created = swarm
        .docker()
        .create_service(service_spec(&request), None)
        .await
        .expect("create service");
    let id = created.id.expect("service id");
    loop {
        let tasks = swarm.service_tasks(&id).await.expect("tasks");
        if tasks.iter().any(|t| t.phase == TaskPhase::Running) {
            break;
        }
        assert!(
            !tasks.iter().any(|t| t.phase == TaskPhase::Failed),
            "baseline task failed: {tasks:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    let place = started.elapsed();
    let started = Instant::now();
    swarm
        .docker()
        .delete_service(&id)
        .await
        .expect("delete service");
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("com.docker.swarm.service.id={id}")],
    )]);
    loop {
        let left = swarm
            .docker()
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await
            .expect("list containers");
        if left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < REMOVAL_TIMEOUT,
            "baseline service {name}: containers remain: {left:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    (place, started.elapsed())
}

fn stats(samples: &[Duration]) -> (f64, f64) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    (mean, ms[ms.len() / 2])
}

fn report(label: &str, tom: &[Duration], plain: &[Duration]) {
    let (tm, tp) = stats(tom);
    let (bm, bp) = stats(plain);
    println!("{label:<34} TOM mean {tm:8.1} ms p50 {tp:8.1} ms | bollard mean {bm:8.1} ms p50 {bp:8.1} ms | ratio mean {:.3} p50 {:.3} (overhead {:+.1}%)", tm / bm, tp / bp, (tm / bm - 1.0) * 100.0);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let iterations: usize = std::env::var("TOM_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let swarm = Arc::new(
        BollardSwarm::connect()
            .await
            .unwrap_or_else(|e| panic!("the swarm benchmark needs a swarm manager engine: {e}")),
    );
    let image = swarm
        .image_id("tom-workload:test")
        .await
        .expect("inspect")
        .expect("tom-workload:test missing: run scripts/setup/40-test-images.sh");
    let node = swarm.nodes().await.expect("nodes")[0].id.clone();
    swarm
        .set_node_label(&node, LABEL_DEVICE, Some(DEVICE))
        .await
        .expect("label node");
    let instance = format!("bench-{}", std::process::id());
    let dir = tempfile::tempdir().expect("tempdir");

    let containers: Vec<String> = (0..iterations).map(|i| format!("bench-{i}")).collect();
    let embedded: Arc<dyn Ledger> = Arc::new(
        EmbeddedLedger::open(&dir.path().join("ledger"), EmbeddedOptions::default())
            .expect("embedded ledger"),
    );
    let memory: Arc<dyn Ledger> = Arc::new(InMemoryLedger::new());
    let config = OrchestratorConfig {
        poll_interval: POLL,
        removal_timeout: REMOVAL_TIMEOUT,
        instance: instance.clone(),
        ..OrchestratorConfig::default()
    };
    let mut variants = Vec::new();
    for (label, ledger) in [
        ("embedded (durable) ledger", embedded),
        ("in-memory ledger", memory),
    ] {
        prepare(ledger.as_ref(), &image, &containers).await;
        let journal = Journal::open(&dir.path().join(format!("journal-{}.redb", variants.len())))
            .expect("journal");
        let orchestrator = Orchestrator::new(
            ledger,
            swarm.clone(),
            journal,
            identity("org1", "orchestrator"),
            config.clone(),
        );
        variants.push((label, orchestrator));
    }
    let caller = identity("org1", "orchestrator");

    // One warm-up of each so the first-use costs (image layers, redb files) are not measured.
    baseline(&swarm, &image, &format!("{instance}-warm"), &instance).await;

    let mut plain = (Vec::new(), Vec::new());
    let mut tom: Vec<(Vec<Duration>, Vec<Duration>)> =
        variants.iter().map(|_| (Vec::new(), Vec::new())).collect();
    for (i, container) in containers.iter().enumerate() {
        let (p, t) = baseline(&swarm, &image, &format!("{instance}-plain-{i}"), &instance).await;
        plain.0.push(p);
        plain.1.push(t);
        for (v, (_, orchestrator)) in variants.iter().enumerate() {
            let started = Instant::now();
            orchestrator
                .place(&caller, container, DEVICE)
                .await
                .unwrap_or_else(|e| panic!("place {container}: {e}"));
            tom[v].0.push(started.elapsed());
            let started = Instant::now();
            orchestrator
                .terminate_container(&caller, container, None)
                .await
                .unwrap_or_else(|e| panic!("terminate {container}: {e}"));
            tom[v].1.push(started.elapsed());
        }
    }
    for service in swarm.tom_services().await.unwrap_or_default() {
        if service.gateway() == Some(instance.as_str()) {
            let _ = swarm.remove_service(&service.id).await;
        }
    }

    println!("swarm placement/termination, {iterations} iterations each, {} (one replica, local image pinned by id)", swarm.describe());
    for (v, (label, _)) in variants.iter().enumerate() {
        report(&format!("place, {label}"), &tom[v].0, &plain.0);
        report(&format!("terminate, {label}"), &tom[v].1, &plain.1);
        let cycle_tom: Vec<Duration> = tom[v]
            .0
            .iter()
            .zip(&tom[v].1)
            .map(|(a, b)| *a + *b)
            .collect();
        let cycle_plain: Vec<Duration> =
            plain.0.iter().zip(&plain.1).map(|(a, b)| *a + *b).collect();
        report(
            &format!("place+terminate, {label}"),
            &cycle_tom,
            &cycle_plain,
        );
    }
}
