//! What the single-node test swarm cannot show, on the in-memory swarm with several nodes:
//! re-placing a container on another device, a device's node going down or leaving the swarm,
//! and a node that joined without proving an identity running nothing. No Docker engine is
//! needed: the swarm is [`MemorySwarm`], the ledger the in-memory one, both through the
//! gateway's public API.

mod swarm_common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use swarm_common::{entity, identify_device, orchestrator_identity, record, submit, wait};
use tom_gateway::ledger::memory::InMemoryLedger;
use tom_gateway::ledger::{CommittedEvent, Ledger, LedgerError, SigningIdentity, Submitted};
use tom_gateway::orchestration::nodes::NodeChange;
use tom_gateway::orchestration::{Journal, OrchestrationError, Orchestrator, OrchestratorConfig};
use tom_gateway::swarm::memory::MemorySwarm;
use tom_gateway::swarm::{SwarmDriver, LABEL_DEVICE};

const IMAGE: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

struct World {
    ledger: Arc<InMemoryLedger>,
    swarm: Arc<MemorySwarm>,
    orch: Arc<Orchestrator>,
    _dir: tempfile::TempDir,
}

/// Three nodes: n1 = edge-node-1, n2 = roadside-gateway-1 (both proved and bound), n3 unproved.
async fn world() -> World {
    // org1 registered, edge-node-1 joined.
    let ledger = swarm_common::ledger().await;
    identify_device(ledger.as_ref(), "org1", "roadside-gateway-1", "edge-node").await;
    for id in ["c1", "c2"] {
        submit(
            ledger.as_ref(),
            &orchestrator_identity(),
            "IdentifyContainer",
            json!({ "container_id": id, "org": "Org1MSP", "image": "w:1", "digest": IMAGE }),
        )
        .await;
    }
    let swarm = Arc::new(MemorySwarm::new());
    swarm.add_image(IMAGE);
    swarm.join_node("n1", "edge-1");
    swarm.join_node("n2", "roadside-1");
    swarm.join_node("n3", "stranger");
    let dir = tempfile::tempdir().unwrap();
    let config = OrchestratorConfig {
        run_timeout: Duration::from_millis(600),
        poll_interval: Duration::from_millis(20),
        removal_timeout: Duration::from_millis(300),
        ..OrchestratorConfig::default()
    };
    let orch = Arc::new(Orchestrator::new(
        ledger.clone(),
        swarm.clone(),
        Journal::open(&dir.path().join("j.redb")).unwrap(),
        orchestrator_identity(),
        config,
    ));
    orch.bind_node("n1", "edge-node-1").await.unwrap();
    orch.bind_node("n2", "roadside-gateway-1").await.unwrap();
    let changes = orch.check_nodes().await.unwrap();
    assert!(
        changes.contains(&NodeChange::Pending {
            node_id: "n3".into(),
            hostname: "stranger".into()
        }),
        "{changes:?}"
    );
    World {
        ledger,
        swarm,
        orch,
        _dir: dir,
    }
}

#[tokio::test]
async fn re_placing_on_another_device_starts_the_new_service_before_removing_the_old() {
    let w = world().await;
    let first = w
        .orch
        .place(&orchestrator_identity(), "c1", "edge-node-1")
        .await
        .unwrap();
    assert_eq!(first.node_id.as_deref(), Some("n1"));
    let second = w
        .orch
        .place(&orchestrator_identity(), "c1", "roadside-gateway-1")
        .await
        .unwrap();
    assert_eq!(second.node_id.as_deref(), Some("n2"));
    let services = w.swarm.tom_services().await.unwrap();
    assert_eq!(services.len(), 1, "the old service is gone: {services:?}");
    assert_eq!(services[0].id, second.service_id);
    let c1 = entity(w.ledger.as_ref(), "c1").await;
    assert_eq!(c1["placement"]["device"], "roadside-gateway-1");
    assert_eq!(c1["placement"]["previous_device"], "edge-node-1");
    assert_eq!(c1["placement"]["status"], "running");
    assert_eq!(
        w.orch.journal().tracked().unwrap()[0].service_id,
        second.service_id
    );
}

#[tokio::test]
async fn a_termination_whose_containers_do_not_stop_is_recorded_as_failed() {
    let w = world().await;
    let placed = w
        .orch
        .place(&orchestrator_identity(), "c1", "edge-node-1")
        .await
        .unwrap();
    assert_eq!(
        w.swarm
            .service_containers(&placed.service_id)
            .await
            .unwrap()
            .len(),
        1
    );
    w.swarm.keep_containers_on_remove(true);
    let error = w
        .orch
        .terminate_container(&orchestrator_identity(), "c1", None)
        .await
        .unwrap_err();
    let OrchestrationError::RemovalFailed {
        detail, outcome_tx, ..
    } = &error
    else {
        panic!("{error}")
    };
    let service = tom_gateway::swarm::service_name("c1", &placed.authorising_tx);
    assert!(
        detail.contains(&format!(
            "service {service} was removed but 1 of its containers still exist"
        )),
        "{detail}"
    );
    let record: Value = record(w.ledger.as_ref(), outcome_tx).await;
    assert_eq!(record["kind"], "OUTCOME", "{record}");
    assert_eq!(record["body"]["outcome"], "failed", "{record}");
    assert!(
        record["body"]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("service {service} was removed")),
        "{record}"
    );
    assert!(w.swarm.tom_services().await.unwrap().is_empty());

    // A container that does stop: the termination waits for it and records `removed`.
    w.swarm.keep_containers_on_remove(false);
    w.orch
        .place(&orchestrator_identity(), "c2", "edge-node-1")
        .await
        .unwrap();
    let done = w
        .orch
        .terminate_container(&orchestrator_identity(), "c2", None)
        .await
        .unwrap();
    assert_eq!(done.removed_services.len(), 1);
}

#[tokio::test]
async fn a_device_whose_node_goes_down_is_unavailable_not_left() {
    let w = world().await;
    w.orch
        .place(&orchestrator_identity(), "c2", "roadside-gateway-1")
        .await
        .unwrap();
    w.swarm.set_node_state("n2", "down");
    let changes = w.orch.check_nodes().await.unwrap();
    assert!(
        changes.iter().any(|c| matches!(c, NodeChange::Availability { device_id, available: false, drift_tx: Some(_), .. } if device_id == "roadside-gateway-1")),
        "{changes:?}"
    );
    assert!(
        !changes
            .iter()
            .any(|c| matches!(c, NodeChange::DeviceLeft { .. })),
        "{changes:?}"
    );
    let device = entity(w.ledger.as_ref(), "roadside-gateway-1").await;
    assert_eq!(device["state"], "joined", "{device}");
    assert_eq!(device["availability"]["status"], "unavailable", "{device}");
    assert!(device["availability"]["reason"]
        .as_str()
        .unwrap()
        .contains("is down"));
    // Reconciliation makes the container's placement status follow: unavailable.
    w.orch.reconcile(false).await.unwrap();
    let c2 = entity(w.ledger.as_ref(), "c2").await;
    assert_eq!(c2["state"], "joined", "{c2}");
    assert_eq!(c2["placement"]["status"], "unavailable", "{c2}");
    // A second look records nothing new.
    assert!(w.orch.check_nodes().await.unwrap().is_empty());
    // Back up: available again, and the placement runs again.
    w.swarm.set_node_state("n2", "ready");
    let changes = w.orch.check_nodes().await.unwrap();
    assert!(
        changes.iter().any(|c| matches!(
            c,
            NodeChange::Availability {
                available: true,
                ..
            }
        )),
        "{changes:?}"
    );
    assert_eq!(
        entity(w.ledger.as_ref(), "roadside-gateway-1").await["availability"]["status"],
        "available"
    );
    // The other device is untouched.
    assert_eq!(
        entity(w.ledger.as_ref(), "edge-node-1").await["state"],
        "joined"
    );
}

#[tokio::test]
async fn a_device_whose_node_leaves_the_swarm_leaves_the_ledger() {
    let w = world().await;
    w.swarm.remove_node("n1");
    let changes = w.orch.check_nodes().await.unwrap();
    assert!(
        changes.iter().any(|c| matches!(c, NodeChange::DeviceLeft { device_id, reason, leave_tx: Some(_), .. } if device_id == "edge-node-1" && reason.contains("left the swarm"))),
        "{changes:?}"
    );
    assert_eq!(
        entity(w.ledger.as_ref(), "edge-node-1").await["state"],
        "left"
    );
}

#[tokio::test]
async fn the_watcher_follows_node_events() {
    let w = world().await;
    let mut seen = w.orch.node_changes();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = w
        .orch
        .spawn_node_watcher(Duration::from_secs(3600), stopped);
    // Join only once the watcher listens, so the change reaches it as an event (its first look
    // at the nodes happens at once; the next only after an hour).
    let swarm = w.swarm.clone();
    wait::until_true(
        "the node watcher to open its event stream",
        Duration::from_secs(5),
        || {
            let swarm = swarm.clone();
            async move { swarm.node_event_subscribers() > 0 }
        },
    )
    .await;
    w.swarm.join_node("n4", "newcomer");
    let change = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let change @ NodeChange::Pending { .. } = seen.recv().await.unwrap() {
                return change;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        change,
        NodeChange::Pending {
            node_id: "n4".into(),
            hostname: "newcomer".into()
        }
    );
    stop.send(true).unwrap();
    watcher.await.unwrap();
}

#[tokio::test]
async fn a_device_without_a_bound_node_runs_nothing_and_the_placement_fails() {
    let w = world().await;
    // The device is proved on the ledger but no node carries its label (n1 is unbound here).
    w.swarm
        .set_node_label("n1", LABEL_DEVICE, None)
        .await
        .unwrap();
    let error = w
        .orch
        .place(&orchestrator_identity(), "c1", "edge-node-1")
        .await
        .unwrap_err();
    let OrchestrationError::PlacementFailed { detail, .. } = &error else {
        panic!("{error}")
    };
    assert!(detail.contains("no suitable node"), "{detail}");
    assert!(entity(w.ledger.as_ref(), "c1").await["placement"].is_null());
    assert!(
        w.swarm.tom_services().await.unwrap().is_empty(),
        "the pending service was removed"
    );
    // Binding a node to a device that is bound elsewhere is refused.
    let refused = w
        .orch
        .bind_node("n3", "roadside-gateway-1")
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("bound to swarm node n2"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_node_bound_to_a_joined_device_is_not_taken_over() {
    let w = world().await;
    // roadside-gateway-1 is bound to n2 already.
    let refused = w
        .orch
        .bind_node("n1", "roadside-gateway-1")
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("bound to swarm node n2"),
        "{refused}"
    );
    // Free it from n2: n1 still belongs to edge-node-1, which has not left.
    w.swarm
        .set_node_label("n2", LABEL_DEVICE, None)
        .await
        .unwrap();
    let refused = w
        .orch
        .bind_node("n1", "roadside-gateway-1")
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("bound to device edge-node-1, which has not left"),
        "{refused}"
    );
    // Once edge-node-1 has left, its node may be bound to another proved device.
    submit(
        w.ledger.as_ref(),
        &orchestrator_identity(),
        "TerminateDevice",
        json!({ "id": "edge-node-1" }),
    )
    .await;
    w.orch.bind_node("n1", "roadside-gateway-1").await.unwrap();
    assert_eq!(
        w.swarm
            .nodes()
            .await
            .unwrap()
            .iter()
            .find(|n| n.id == "n1")
            .unwrap()
            .device_id(),
        Some("roadside-gateway-1")
    );
}

/// A ledger whose entities come back in a shape this gateway cannot decode (a contract of a
/// newer schema, say). Everything else is the in-memory ledger's.
struct SchemaDrift(Arc<InMemoryLedger>);

#[async_trait::async_trait]
impl Ledger for SchemaDrift {
    async fn submit(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<Submitted, LedgerError> {
        self.0.submit(identity, function, argument).await
    }

    async fn evaluate(
        &self,
        identity: &SigningIdentity,
        function: &str,
        argument: &[u8],
    ) -> Result<Vec<u8>, LedgerError> {
        if function == "GetEntity" {
            return Ok(
                br#"{"type":"container","id":"c1","shape":"from a newer contract"}"#.to_vec(),
            );
        }
        self.0.evaluate(identity, function, argument).await
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<CommittedEvent> {
        self.0.subscribe()
    }

    fn describe(&self) -> String {
        "schema drift".into()
    }
}

#[tokio::test]
async fn an_entity_that_does_not_decode_is_an_error_and_reconciliation_removes_nothing() {
    let w = world().await;
    let placed = w
        .orch
        .place(&orchestrator_identity(), "c1", "edge-node-1")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let drifted = Orchestrator::new(
        Arc::new(SchemaDrift(w.ledger.clone())),
        w.swarm.clone(),
        Journal::open(&dir.path().join("j.redb")).unwrap(),
        orchestrator_identity(),
        OrchestratorConfig::default(),
    );
    let error = drifted.entity("c1").await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("entity c1 as the ledger returned it does not decode"),
        "{error}"
    );
    // Reconciliation with removal on must stop at the error, not take the container for
    // unauthorised and remove its running service.
    assert!(drifted.reconcile(true).await.is_err());
    let services = w.swarm.tom_services().await.unwrap();
    assert_eq!(
        services.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![placed.service_id]
    );
}
