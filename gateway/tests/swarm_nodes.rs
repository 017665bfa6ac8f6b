//! Devices are swarm nodes: pending until bound after a proof, and a drained node makes its
//! device leave (its containers first). The test swarm has a single node, so this exercises
//! what one node can do (labels, availability, the event stream); a node going down or leaving
//! needs a second node (see the orchestration module docs).
//!
//! This file holds one test on purpose: draining the only node stops every task on it, so it
//! must not run beside the other swarm tests (cargo runs test binaries one after another).

mod swarm_common;

use std::sync::Arc;
use std::time::Duration;

use swarm_common::*;
use tom_gateway::orchestration::nodes::NodeChange;
use tom_gateway::swarm::{Availability, SwarmDriver, LABEL_DEVICE};

/// Puts the node back to active whatever happens, so later tests find a usable swarm.
struct Reactivate(String);

impl Drop for Reactivate {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["node", "update", "--availability", "active", &self.0])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_pending_until_bound_and_draining_it_makes_the_device_unavailable() {
    let swarm = swarm().await;
    let image = workload_image(&swarm).await;
    let ledger = ledger().await;
    let instance = unique("t-nodes");
    let _cleanup = Cleanup(instance.clone());
    let dir = tempfile::tempdir().unwrap();
    let orch = Arc::new(orchestrator(
        ledger.clone(),
        swarm.clone(),
        &dir.path().join("journal.redb"),
        config(&instance),
    ));
    let node = node_id(&swarm).await;
    let _reactivate = Reactivate(node.clone());

    // Unbound, the node is pending: no device identity, no TOM placement can land on it.
    swarm
        .set_node_label(&node, LABEL_DEVICE, None)
        .await
        .unwrap();
    let changes = orch.check_nodes().await.unwrap();
    assert!(
        changes.contains(&NodeChange::Pending {
            node_id: node.clone(),
            hostname: swarm.nodes().await.unwrap()[0].hostname.clone()
        }),
        "{changes:?}"
    );
    assert_eq!(orch.pending_nodes().await.unwrap().len(), 1);

    // Binding needs a device the ledger accepted.
    let refused = orch.bind_node(&node, "never-identified").await.unwrap_err();
    assert!(
        refused.to_string().contains("has not joined the ledger"),
        "{refused}"
    );
    orch.bind_node(&node, DEVICE).await.unwrap();
    assert_eq!(
        orch.check_nodes().await.unwrap(),
        vec![NodeChange::Bound {
            node_id: node.clone(),
            device_id: DEVICE.into()
        }]
    );
    assert!(orch.pending_nodes().await.unwrap().is_empty());

    let container = unique("on-drained");
    identify_container(ledger.as_ref(), &container, &image, None).await;
    orch.place(&orchestrator_identity(), &container, DEVICE)
        .await
        .unwrap();

    // The watcher follows the event stream; the operator drains the node.
    let mut seen = orch.node_changes();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // No wait for the watcher to subscribe: its first look at the nodes comes right after it
    // opens the event stream, so a drain before the stream is open is seen by that look.
    let watcher = orch.spawn_node_watcher(Duration::from_secs(30), stopped);
    swarm
        .set_node_availability(&node, Availability::Drain)
        .await
        .unwrap();
    // Drained for maintenance: the device is unavailable, not gone (ARCHITECTURE.md).
    let change = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let change @ NodeChange::Availability {
                available: false, ..
            } = seen.recv().await.unwrap()
            {
                return change;
            }
        }
    })
    .await
    .expect("the watcher reported the device unavailable");
    let NodeChange::Availability {
        device_id,
        reason,
        drift_tx,
        error,
        ..
    } = change
    else {
        unreachable!()
    };
    assert_eq!(device_id, DEVICE);
    assert_eq!(error, None);
    assert!(reason.contains("drain"), "{reason}");
    let record = record(ledger.as_ref(), drift_tx.as_ref().unwrap()).await;
    assert_eq!(record["kind"], "DRIFT");
    assert_eq!(record["body"]["device_status"], "unavailable");
    let device = entity(ledger.as_ref(), DEVICE).await;
    assert_eq!(device["state"], "joined", "{device}");
    assert_eq!(device["availability"]["status"], "unavailable", "{device}");
    // Its container stays placed, recorded as unavailable; the node keeps its label.
    orch.reconcile(false).await.unwrap();
    let placed = entity(ledger.as_ref(), &container).await;
    assert_eq!(placed["state"], "joined", "{placed}");
    assert_eq!(placed["placement"]["status"], "unavailable", "{placed}");
    assert!(swarm.nodes().await.unwrap()[0]
        .labels
        .contains_key(LABEL_DEVICE));

    // Back from maintenance: available again, and the container runs again.
    swarm
        .set_node_availability(&node, Availability::Active)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let NodeChange::Availability {
                available: true, ..
            } = seen.recv().await.unwrap()
            {
                return;
            }
        }
    })
    .await
    .expect("the watcher reported the device available again");
    wait::until_true(
        "the container recorded running again",
        Duration::from_secs(60),
        || async {
            orch.reconcile(false).await.unwrap();
            entity(ledger.as_ref(), &container).await["placement"]["status"] == "running"
        },
    )
    .await;
    stop.send(true).unwrap();
    watcher.await.unwrap();
    remove_instance_services(&swarm, &instance).await;
}
