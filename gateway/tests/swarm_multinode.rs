//! The orchestrator on a real multi-node swarm: four Docker engines on this machine, each in a
//! network namespace of its own (scripts/multinode-swarm.sh), node 1 the manager, nodes 2–4
//! workers. Needs root (namespaces, dockerd) and the tom-workload:test image on the host engine
//! (scripts/setup/40-test-images.sh). The swarm is torn down when the test ends, pass or fail.
//!
//! One test, in phases, on one swarm (setting a swarm up takes ~10 s):
//! devices bound to nodes (a node that does not exist commits nothing), placement lands on the
//! constrained node, placement across two organisations' devices (with and without consent),
//! drift judged on what runs (a labels-copying impostor, a scaled service, a service removed
//! behind TOM's back), a stopped worker engine (device unavailable, not left, and back), a node
//! that leaves and rejoins, and node labels following the ledger.

mod swarm_common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm_common::wait::until;
use swarm_common::*;
use tom_contract::requests;
use tom_gateway::api::actions::{ActionError, ContainerActions};
use tom_gateway::ledger::Ledger;
use tom_gateway::orchestration::actions::SwarmActions;
use tom_gateway::orchestration::Orchestrator;
use tom_gateway::swarm::docker::BollardSwarm;
use tom_gateway::swarm::{SwarmDriver, LABEL_DEVICE};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/multinode-swarm.sh");

/// The multi-node swarm; `down` runs on drop, whatever happened.
struct MultiNode {
    dir: PathBuf,
    env: BTreeMap<String, String>,
}

fn script(args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("run scripts/multinode-swarm.sh")
}

impl MultiNode {
    fn up(nodes: usize) -> MultiNode {
        let dir = std::env::temp_dir().join(unique("tomsw"));
        let mut swarm = MultiNode {
            dir: dir.clone(),
            env: BTreeMap::new(),
        };
        let started = Instant::now();
        let out = script(&["up", dir.to_str().unwrap(), &nodes.to_string()]);
        assert!(
            out.status.success(),
            "setting up the multi-node swarm failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "multi-node swarm: {nodes} engines up and joined in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let env = std::fs::read_to_string(dir.join("env")).unwrap();
        swarm.env = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        swarm
    }

    fn get(&self, key: &str) -> &str {
        self.env.get(key).unwrap_or_else(|| panic!("{key} missing"))
    }

    fn sock(&self, i: usize) -> String {
        self.get(&format!("SOCK_{i}")).to_owned()
    }

    fn node_id(&self, i: usize) -> String {
        self.get(&format!("NODEID_{i}")).to_owned()
    }

    /// The docker CLI against node `i`'s engine.
    fn docker(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new("docker")
            .arg("-H")
            .arg(self.sock(i))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?} on node {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn engine(&self, action: &str, i: usize) {
        let out = script(&[action, self.dir.to_str().unwrap(), &i.to_string()]);
        assert!(
            out.status.success(),
            "{action} node {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn manager(&self) -> Arc<BollardSwarm> {
        let docker = bollard::Docker::connect_with_unix(
            self.sock(1).trim_start_matches("unix://"),
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap();
        Arc::new(BollardSwarm::from_docker(docker).await.unwrap())
    }
}

impl Drop for MultiNode {
    fn drop(&mut self) {
        let out = script(&["down", self.dir.to_str().unwrap()]);
        if !out.status.success() {
            eprintln!(
                "tearing down the multi-node swarm: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Poll `check` every 500 ms until it returns Some, or fail after `limit`.
fn device_request(org: &str, name: &str, node: Option<&str>) -> requests::IdentifyDevice {
    let device = tom_fixtures::identity(org, name);
    let mut request = requests::IdentifyDevice::signed(
        name,
        device.msp_id,
        "edge-node",
        device.cert_pem,
        &unique("nonce"),
        tom_contract::simulation::DEFAULT_CHANNEL,
        |m| device.sign(m),
    )
    .unwrap();
    request.node_id = node.map(str::to_owned);
    request
}

async fn container(ledger: &dyn Ledger, id: &str, org_msp: &str, digest: &str) {
    let request =
        serde_json::json!({ "container_id": id, "org": org_msp, "image": IMAGE, "digest": digest });
    submit(
        ledger,
        &orchestrator_identity(),
        "IdentifyContainer",
        request,
    )
    .await;
}

async fn task_node(swarm: &BollardSwarm, service: &str) -> Option<String> {
    swarm
        .service_tasks(service)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.phase == tom_gateway::swarm::TaskPhase::Running)
        .and_then(|t| t.node_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_multi_node_swarm() {
    let mn = MultiNode::up(4);
    let host = swarm().await;
    let digest = workload_image(&host).await;
    let swarm = mn.manager().await;
    let (n2, n3, n4) = (mn.node_id(2), mn.node_id(3), mn.node_id(4));

    // Org1 hosts Org2's containers on its devices; Org2 lets Org1's orchestrators act for it
    // but hosts nobody else's containers.
    let ledger = Arc::new(tom_gateway::ledger::memory::InMemoryLedger::new());
    register_org_with_policy(
        ledger.as_ref(),
        "org1",
        serde_json::json!({ "hosts_containers_of": ["Org2MSP"] }),
    )
    .await;
    register_org_with_policy(
        ledger.as_ref(),
        "org2",
        serde_json::json!({ "orchestrators": ["Org1MSP"] }),
    )
    .await;
    let journal = tempfile::tempdir().unwrap();
    let instance = unique("mn");
    let orch = Arc::new(orchestrator(
        ledger.clone(),
        swarm.clone(),
        &journal.path().join("j.redb"),
        config(&instance),
    ));
    let actions = SwarmActions::new(orch.clone());
    let dyn_ledger: Arc<dyn Ledger> = ledger.clone();
    let me = orchestrator_identity();

    // --- Devices and nodes ---------------------------------------------------------------
    // A node that does not exist: refused before anything is committed.
    let refused = actions
        .identify_device(
            &dyn_ledger,
            &me,
            &device_request("org1", "edge-node-1", None),
            Some("no-such-node"),
        )
        .await;
    assert!(
        matches!(&refused, Err(ActionError::Rejected(m)) if m.contains("does not exist")),
        "{:?}",
        refused.map(|r| r.detail)
    );
    let probe = ledger
        .evaluate(&me, "GetEntity", br#"{"id":"edge-node-1"}"#)
        .await;
    assert!(
        probe.is_err(),
        "a join with a missing node must commit nothing, found {:?}",
        probe.map(|b| String::from_utf8_lossy(&b).into_owned())
    );
    for (org, name, node) in [
        ("org1", "edge-node-1", &n2),
        ("org1", "roadside-gateway-1", &n3),
        ("org2", "car-42", &n4),
    ] {
        actions
            .identify_device(
                &dyn_ledger,
                &me,
                &device_request(org, name, None),
                Some(node),
            )
            .await
            .unwrap_or_else(|e| panic!("joining {name} on {node}: {e}"));
        let device = entity(ledger.as_ref(), name).await;
        assert_eq!(device["node_id"], node.as_str(), "{device}");
    }

    // --- Placement lands on the constrained node, across organisations -------------------
    container(ledger.as_ref(), "mn-a", "Org1MSP", &digest).await;
    container(ledger.as_ref(), "mn-b", "Org1MSP", &digest).await;
    container(ledger.as_ref(), "mn-org2", "Org2MSP", &digest).await;
    container(ledger.as_ref(), "mn-c", "Org2MSP", &digest).await;
    let placed_a = orch.place(&me, "mn-a", "edge-node-1").await.unwrap();
    assert_eq!(placed_a.node_id.as_deref(), Some(n2.as_str()));
    let placed_b = orch.place(&me, "mn-b", "roadside-gateway-1").await.unwrap();
    assert_eq!(placed_b.node_id.as_deref(), Some(n3.as_str()));
    // Org2's container on Org1's device: Org1 consents.
    let placed_org2 = orch.place(&me, "mn-org2", "edge-node-1").await.unwrap();
    assert_eq!(placed_org2.node_id.as_deref(), Some(n2.as_str()));
    // Org2's own container on Org2's car.
    let placed_c = orch.place(&me, "mn-c", "car-42").await.unwrap();
    assert_eq!(placed_c.node_id.as_deref(), Some(n4.as_str()));
    // Org1's container on Org2's car: Org2 hosts nobody's containers; nothing runs.
    let refused = orch.place(&me, "mn-b", "car-42").await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        task_node(&swarm, &placed_b.service_id).await.as_deref(),
        Some(n3.as_str())
    );

    // --- Drift judged on what runs -------------------------------------------------------
    // A different image on node 2, and a hand-made service that copies mn-a's labels.
    let build = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'FROM {IMAGE}\\nLABEL impostor=1\\n' | DOCKER_BUILDKIT=0 docker -H {} build -q -t tom-impostor:test -",
            mn.sock(2)
        ))
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let impostor_image = String::from_utf8_lossy(&build.stdout).trim().to_owned();
    assert_ne!(impostor_image, digest);
    let impostor = |name: &str| {
        mn.docker(
            1,
            &[
                "service",
                "create",
                "--detach",
                "--name",
                name,
                "--label",
                "tom.container=mn-a",
                "--label",
                &format!("tom.authorising-tx={}", placed_a.authorising_tx),
                "--label",
                &format!("tom.gateway={instance}"),
                "--label",
                "tom.device=edge-node-1",
                "--constraint",
                "node.labels.tom.device==edge-node-1",
                "--network",
                "host",
                &impostor_image,
            ],
        )
    };
    let impostor_id = impostor(&format!("{instance}-impostor"));
    let report = orch.reconcile(false).await.unwrap();
    let found = report
        .drift
        .iter()
        .find(|d| d.description.contains(&impostor_id))
        .unwrap_or_else(|| panic!("the impostor was not reported: {report:?}"));
    assert!(
        found.description.contains("service id"),
        "{}",
        found.description
    );
    assert!(found.action_taken.starts_with("none"), "{found:?}");
    let unauthorised = orch.unauthorised_services().await.unwrap();
    assert!(
        unauthorised.iter().any(|s| s.service_id == impostor_id),
        "{unauthorised:?}"
    );
    // Reported while removal was off, removed once it is on, and recorded once.
    let report = orch.reconcile(true).await.unwrap();
    let removal: Vec<_> = report
        .drift
        .iter()
        .filter(|d| d.description.contains(&impostor_id))
        .collect();
    assert_eq!(removal.len(), 1, "{report:?}");
    assert_eq!(removal[0].action_taken, "removed the service");
    assert!(!swarm
        .tom_services()
        .await
        .unwrap()
        .iter()
        .any(|s| s.id == impostor_id));
    let again = orch.reconcile(true).await.unwrap();
    assert!(
        !again
            .drift
            .iter()
            .any(|d| d.description.contains(&impostor_id)),
        "{again:?}"
    );
    assert_eq!(
        entity(ledger.as_ref(), "mn-a").await["placement"]["status"],
        "running"
    );
    // Termination removes the placement's own service, never an impostor.
    let impostor_id = impostor(&format!("{instance}-impostor2"));
    let terminated = orch.terminate_container(&me, "mn-a", None).await.unwrap();
    assert_eq!(
        terminated.removed_services,
        vec![placed_a.service_name.clone()]
    );
    assert!(swarm
        .tom_services()
        .await
        .unwrap()
        .iter()
        .any(|s| s.id == impostor_id));
    let report = orch.reconcile(true).await.unwrap();
    assert!(
        report.drift.iter().any(
            |d| d.description.contains(&impostor_id) && d.action_taken == "removed the service"
        ),
        "{report:?}"
    );
    // A service changed behind TOM's back (scaled), then removed: the field is named and the
    // container's placement status follows.
    mn.docker(
        1,
        &[
            "service",
            "scale",
            "--detach",
            &format!("{}=2", placed_org2.service_id),
        ],
    );
    let report = orch.reconcile(false).await.unwrap();
    assert!(
        report
            .drift
            .iter()
            .any(|d| d.description.contains("replicas: 2")),
        "{report:?}"
    );
    assert_eq!(
        entity(ledger.as_ref(), "mn-org2").await["placement"]["status"],
        "drifted"
    );
    mn.docker(1, &["service", "rm", &placed_org2.service_id]);
    orch.reconcile(false).await.unwrap();
    let org2 = entity(ledger.as_ref(), "mn-org2").await;
    assert_eq!(org2["state"], "joined", "{org2}");
    assert_eq!(org2["placement"]["status"], "missing", "{org2}");

    // --- A worker's engine stops: its device is unavailable, not left; then back ---------
    orch.check_nodes().await.unwrap();
    mn.engine("stop", 3);
    until(
        "device roadside-gateway-1 recorded unavailable",
        Duration::from_secs(60),
        || async {
            orch.check_nodes().await.ok()?;
            let device = entity(ledger.as_ref(), "roadside-gateway-1").await;
            (device["availability"]["status"] == "unavailable").then_some(device)
        },
    )
    .await;
    let device = entity(ledger.as_ref(), "roadside-gateway-1").await;
    assert_eq!(device["state"], "joined", "{device}");
    orch.reconcile(false).await.unwrap();
    let b = entity(ledger.as_ref(), "mn-b").await;
    assert_eq!(b["state"], "joined", "{b}");
    assert_eq!(b["placement"]["status"], "unavailable", "{b}");
    mn.engine("start", 3);
    until(
        "device roadside-gateway-1 available again",
        Duration::from_secs(90),
        || async {
            orch.check_nodes().await.ok()?;
            let device = entity(ledger.as_ref(), "roadside-gateway-1").await;
            (device["availability"]["status"] == "available").then_some(())
        },
    )
    .await;
    until("mn-b running again", Duration::from_secs(90), || async {
        orch.reconcile(false).await.ok()?;
        let b = entity(ledger.as_ref(), "mn-b").await;
        (b["placement"]["status"] == "running").then_some(())
    })
    .await;

    // --- A node leaves and rejoins -------------------------------------------------------
    mn.docker(4, &["swarm", "leave", "--force"]);
    until("node 4 down", Duration::from_secs(60), || async {
        let nodes = swarm.nodes().await.ok()?;
        nodes.iter().any(|n| n.id == n4 && !n.is_up()).then_some(())
    })
    .await;
    orch.check_nodes().await.unwrap();
    assert_eq!(
        entity(ledger.as_ref(), "car-42").await["state"],
        "joined",
        "a node that stopped answering is unavailable, not gone"
    );
    mn.docker(1, &["node", "rm", "--force", &n4]);
    orch.check_nodes().await.unwrap();
    let car = entity(ledger.as_ref(), "car-42").await;
    assert_eq!(car["state"], "left", "{car}");
    assert!(
        car["left"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("left the swarm"),
        "{car}"
    );
    assert_eq!(entity(ledger.as_ref(), "mn-c").await["state"], "left");
    mn.docker(
        4,
        &[
            "swarm",
            "join",
            "--token",
            mn.get("JOIN_TOKEN"),
            "--advertise-addr",
            mn.get("ADDR_4"),
            "--listen-addr",
            &format!("{}:2377", mn.get("ADDR_4")),
            mn.get("MANAGER_ADDR"),
        ],
    );
    let rejoined = mn.docker(4, &["info", "--format", "{{.Swarm.NodeID}}"]);
    assert_ne!(rejoined, n4);
    let pending = orch.pending_nodes().await.unwrap();
    assert!(pending.iter().any(|n| n.id == rejoined), "{pending:?}");
    actions
        .identify_device(
            &dyn_ledger,
            &me,
            &device_request("org2", "car-42", None),
            Some(&rejoined),
        )
        .await
        .unwrap();
    assert_eq!(
        entity(ledger.as_ref(), "car-42").await["node_id"],
        rejoined.as_str()
    );
    container(ledger.as_ref(), "mn-c2", "Org2MSP", &digest).await;
    let placed = orch.place(&me, "mn-c2", "car-42").await.unwrap();
    assert_eq!(placed.node_id.as_deref(), Some(rejoined.as_str()));

    // --- Node labels follow the ledger ---------------------------------------------------
    orch.terminate_container(&me, "mn-b", None).await.unwrap();
    actions
        .terminate_device(
            &dyn_ledger,
            &me,
            &requests::TerminateEntity {
                id: "roadside-gateway-1".into(),
                reason: None,
            },
        )
        .await
        .unwrap();
    let label = |node: String| {
        let swarm = swarm.clone();
        async move {
            swarm
                .nodes()
                .await
                .unwrap()
                .into_iter()
                .find(|n| n.id == node)
                .and_then(|n| n.labels.get(LABEL_DEVICE).cloned())
        }
    };
    assert_eq!(
        label(n3.clone()).await,
        None,
        "a device that left keeps no label"
    );
    // A label left by an earlier run for a device the ledger does not have is removed at start.
    swarm
        .set_node_label(&n3, LABEL_DEVICE, Some("ghost-device"))
        .await
        .unwrap();
    let changed = orch.sync_node_labels().await.unwrap();
    assert!(
        changed.iter().any(|c| c.contains("ghost-device")),
        "{changed:?}"
    );
    assert_eq!(label(n3.clone()).await, None);

    remove_instance_services(&swarm, &instance).await;
    drop::<Arc<Orchestrator>>(orch);
}
