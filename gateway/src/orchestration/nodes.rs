//! Devices are Swarm nodes: this watcher turns node events into device lifecycle transitions.
//!
//! * A node that joins the swarm stays *pending*: it carries no [`LABEL_DEVICE`] label, so no
//!   TOM service can be placed on it (services are constrained to that label). It becomes a
//!   device only when the device's identity is proved on the ledger (`IdentifyDevice`, through
//!   `POST /v1/devices`) and [`Orchestrator::bind_node`] labels it.
//! * A device node that is drained or paused (maintenance), or down or disconnected (its engine
//!   does not answer), makes the device *unavailable*: a DRIFT record sets its availability,
//!   with the reason; its identity and placements stand (reconciliation sets their placement
//!   status to `unavailable`), and both come back when the node is ready and active again.
//! * A device node that is gone from the swarm (removed) triggers the device's leave transition
//!   (`TerminateDevice` with the reason). The contract refuses a device leave while containers
//!   are placed on it, so the containers TOM placed there leave first (each through the
//!   termination protocol). ARCHITECTURE.md ("Devices and swarm nodes") has the rule.
//! * Labels follow the ledger: removed when a device leaves (here, or `DELETE /v1/devices`),
//!   and at start [`Orchestrator::sync_node_labels`] removes a label naming a device that is
//!   not joined, or that the ledger binds to another node.
//!
//! The watcher never invents a device: it only acts on nodes whose label TOM wrote after a
//! proof the ledger accepted.
//!
//! Tested on [`crate::swarm::memory::MemorySwarm`] (`gateway/tests/swarm_multinode_protocols.rs`)
//! and on a real four-engine swarm (`gateway/tests/swarm_multinode.rs`, set up by
//! `scripts/multinode-swarm.sh`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tom_contract::model::{DeviceStatus, Entity, Lifecycle};
use tom_contract::requests;
use tom_contract::transaction::Transaction as _;

use super::{OrchestrationError, Orchestrator};
use crate::swarm::{Availability, NodeInfo, LABEL_DEVICE};

/// What the watcher saw change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum NodeChange {
    /// A node without a proven device identity.
    Pending { node_id: String, hostname: String },
    /// A node labelled as a device (bound after its proof).
    Bound { node_id: String, device_id: String },
    /// The device's node is available again, or unavailable (drained, paused, down,
    /// disconnected): recorded as drift with the device's new availability; it has not left.
    Availability {
        node_id: String,
        device_id: String,
        available: bool,
        reason: String,
        drift_tx: Option<String>,
        error: Option<String>,
    },
    /// The device's node went away; the leave was recorded (or why it could not be).
    DeviceLeft {
        node_id: String,
        device_id: String,
        reason: String,
        leave_tx: Option<String>,
        containers_terminated: Vec<String>,
        error: Option<String>,
    },
}

impl Orchestrator {
    /// Whether `node_id` can be bound to `device_id`: the node exists, no other node is bound
    /// to the device, and the node is not bound to another device that has not left. Checked
    /// before the device's join is submitted, so a join with a bad node commits nothing.
    pub async fn check_bindable(
        &self,
        node_id: &str,
        device_id: &str,
    ) -> Result<(), OrchestrationError> {
        let nodes = self.swarm.nodes().await?;
        if let Some(other) = nodes
            .iter()
            .find(|n| n.device_id() == Some(device_id) && n.id != node_id)
        {
            return Err(OrchestrationError::Invalid(format!(
                "device {device_id} is bound to swarm node {} already",
                other.id
            )));
        }
        let Some(node) = nodes.iter().find(|n| n.id == node_id) else {
            return Err(OrchestrationError::Invalid(format!(
                "swarm node {node_id} does not exist (docker node ls lists the nodes); nothing was recorded"
            )));
        };
        // A node is one device: it is not taken over while the device it is bound to has not
        // left (its containers run there under that device's placements).
        if let Some(bound) = node.device_id().filter(|d| *d != device_id) {
            if let Some(Entity::Device(d)) = self.entity(bound).await? {
                if d.state == Lifecycle::Joined {
                    return Err(OrchestrationError::Invalid(format!(
                        "swarm node {node_id} is bound to device {bound}, which has not left; it must leave first"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Bind a swarm node to a device whose identity the ledger accepted: label the node so
    /// placements for the device land on it.
    pub async fn bind_node(
        &self,
        node_id: &str,
        device_id: &str,
    ) -> Result<(), OrchestrationError> {
        match self.entity(device_id).await? {
            Some(Entity::Device(d)) if d.state == Lifecycle::Joined => {}
            Some(Entity::Device(d)) => {
                return Err(OrchestrationError::Invalid(format!("device {device_id} has left the ledger ({}); it must prove its identity again", Entity::Device(d.clone()).state_description())))
            }
            _ => return Err(OrchestrationError::Invalid(format!("device {device_id} has not joined the ledger; prove its identity first (POST /v1/devices)"))),
        }
        self.check_bindable(node_id, device_id).await?;
        self.swarm
            .set_node_label(node_id, LABEL_DEVICE, Some(device_id))
            .await?;
        Ok(())
    }

    /// Make node labels follow the ledger (at start, and after a device leaves): a
    /// `tom.device` label naming a device that is not joined, or that the ledger binds to
    /// another node, is removed. Returns what it changed.
    pub async fn sync_node_labels(&self) -> Result<Vec<String>, OrchestrationError> {
        let mut changed = Vec::new();
        let nodes = self.swarm.nodes().await?;
        for node in &nodes {
            let Some(device_id) = node.device_id() else {
                continue;
            };
            let stale = match self.entity(device_id).await? {
                Some(Entity::Device(d)) if d.state == Lifecycle::Joined => d
                    .node_id
                    .as_deref()
                    .filter(|n| *n != node.id)
                    .map(|n| format!("the ledger binds device {device_id} to swarm node {n}")),
                Some(Entity::Device(d)) => Some(format!(
                    "device {device_id} is not joined on the ledger ({})",
                    Entity::Device(d.clone()).state_description()
                )),
                _ => Some(format!("the ledger has no device {device_id}")),
            };
            if let Some(why) = stale {
                self.swarm
                    .set_node_label(&node.id, LABEL_DEVICE, None)
                    .await?;
                tracing::warn!(node = %node.id, device = %device_id, %why, "removed a stale device label");
                changed.push(format!(
                    "removed label {LABEL_DEVICE}={device_id} from swarm node {}: {why}",
                    node.id
                ));
            }
        }
        Ok(changed)
    }

    /// Remove the `tom.device` label of every node labelled with `device_id` (the device left).
    pub async fn unbind_device(&self, device_id: &str) -> Result<Vec<String>, OrchestrationError> {
        let mut unbound = Vec::new();
        for node in self.swarm.nodes().await? {
            if node.device_id() == Some(device_id) {
                self.swarm
                    .set_node_label(&node.id, LABEL_DEVICE, None)
                    .await?;
                unbound.push(node.id);
            }
        }
        Ok(unbound)
    }

    /// Nodes that have not proved a device identity.
    pub async fn pending_nodes(&self) -> Result<Vec<NodeInfo>, OrchestrationError> {
        Ok(self
            .swarm
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.device_id().is_none())
            .collect())
    }

    /// Compare the swarm's nodes with the last look and act on what changed.
    pub async fn check_nodes(&self) -> Result<Vec<NodeChange>, OrchestrationError> {
        let current = self.swarm.nodes().await?;
        let previous = self.nodes.lock().map(|n| n.clone()).unwrap_or_default();
        let mut changes = Vec::new();
        let mut snapshot = BTreeMap::new();
        for node in current {
            let before = previous.get(&node.id);
            match node.device_id().map(str::to_owned) {
                None => {
                    if before.is_none_or(|b| b.device_id().is_some()) {
                        changes.push(NodeChange::Pending {
                            node_id: node.id.clone(),
                            hostname: node.hostname.clone(),
                        });
                    }
                    snapshot.insert(node.id.clone(), node);
                }
                Some(device_id) => {
                    // The rule (ARCHITECTURE.md, "Devices and swarm nodes"): a node that is
                    // drained, paused, down or disconnected makes its device *unavailable*
                    // (recorded, reversible); only a node that is gone from the swarm makes it
                    // leave.
                    let available = node.is_up() && node.availability == Availability::Active;
                    if let Some(change) =
                        self.availability_change(&node, &device_id, available).await
                    {
                        changes.push(change);
                    }
                    if before.is_none_or(|b| b.device_id() != Some(device_id.as_str())) {
                        changes.push(NodeChange::Bound {
                            node_id: node.id.clone(),
                            device_id,
                        });
                    }
                    snapshot.insert(node.id.clone(), node);
                }
            }
        }
        for (id, node) in &previous {
            if let (false, Some(device_id)) = (snapshot.contains_key(id), node.device_id()) {
                let reason = format!("swarm node {id} ({}) left the swarm", node.hostname);
                changes.push(self.device_left(id, device_id, &reason, false).await);
            }
        }
        if let Ok(mut nodes) = self.nodes.lock() {
            *nodes = snapshot;
        }
        for change in &changes {
            tracing::info!(?change, "swarm node change");
            let _ = self.node_changes.send(change.clone());
        }
        Ok(changes)
    }

    /// Record the device's availability if it differs from what the ledger last recorded.
    async fn availability_change(
        &self,
        node: &NodeInfo,
        device_id: &str,
        available: bool,
    ) -> Option<NodeChange> {
        let device = match self.entity(device_id).await {
            Ok(Some(Entity::Device(d))) if d.state == Lifecycle::Joined => d,
            _ => return None,
        };
        let recorded = device
            .availability
            .as_ref()
            .map_or(DeviceStatus::Available, |a| a.status);
        let status = if available {
            DeviceStatus::Available
        } else {
            DeviceStatus::Unavailable
        };
        if recorded == status {
            return None;
        }
        let reason = if available {
            format!(
                "swarm node {} ({}) is ready and active again",
                node.id, node.hostname
            )
        } else if node.availability != Availability::Active && node.is_up() {
            format!(
                "swarm node {} ({}) was set to {} by the operator (maintenance): device unavailable, not left",
                node.id, node.hostname, node.availability
            )
        } else {
            format!(
                "swarm node {} ({}) is {} (its engine does not answer the managers): device unavailable, not left",
                node.id, node.hostname, node.state
            )
        };
        let result = self
            .record_drift(
                None,
                &format!("node {}", node.id),
                None,
                reason.clone(),
                "none: the device's identity and placements stand; its containers run again when it is back".to_owned(),
                super::DriftUpdate::device(device_id, status),
            )
            .await;
        Some(NodeChange::Availability {
            node_id: node.id.clone(),
            device_id: device_id.to_owned(),
            available,
            reason,
            drift_tx: result.as_ref().ok().map(|d| d.drift_tx.clone()),
            error: result.err().map(|e| e.to_string()),
        })
    }

    /// The device on `node_id` leaves: its containers leave first, then the device, then the
    /// node's label goes (if the node still exists).
    async fn device_left(
        &self,
        node_id: &str,
        device_id: &str,
        reason: &str,
        node_exists: bool,
    ) -> NodeChange {
        let mut terminated = Vec::new();
        let mut errors = Vec::new();
        let mut leave_tx = None;
        let mut not_joined = false;
        match self.entity(device_id).await {
            Ok(Some(Entity::Device(d))) if d.state == Lifecycle::Joined => {
                let placed = self.journal_op(|j| j.tracked()).await.unwrap_or_default();
                for tracked in placed.into_iter().filter(|t| t.device_id == device_id) {
                    let why = format!("device {device_id} left: {reason}");
                    match self
                        .terminate_container(&self.identity, &tracked.container_id, Some(&why))
                        .await
                    {
                        Ok(_) => terminated.push(tracked.container_id),
                        Err(e) => errors.push(format!(
                            "terminating container {}: {e}",
                            tracked.container_id
                        )),
                    }
                }
                let request = requests::TerminateEntity {
                    id: device_id.to_owned(),
                    reason: Some(reason.to_owned()),
                };
                match self
                    .submit(&self.identity, requests::TerminateDevice::NAME, &request)
                    .await
                {
                    Ok(submitted) => leave_tx = Some(submitted.tx_id),
                    Err(e) => errors.push(format!("recording the device's leave: {e}")),
                }
            }
            Ok(_) => {
                not_joined = true;
                errors.push(format!(
                    "device {device_id} is not joined on the ledger; nothing to record"
                ));
            }
            Err(e) => errors.push(format!("reading device {device_id}: {e}")),
        }
        // The label goes once the leave is recorded, or if the ledger does not have the device
        // joined at all (a stale label would otherwise be acted on at every look).
        if node_exists && (leave_tx.is_some() || not_joined) {
            if let Err(e) = self.swarm.set_node_label(node_id, LABEL_DEVICE, None).await {
                errors.push(format!("removing the node's device label: {e}"));
            }
        }
        NodeChange::DeviceLeft {
            node_id: node_id.to_owned(),
            device_id: device_id.to_owned(),
            reason: reason.to_owned(),
            leave_tx,
            containers_terminated: terminated,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        }
    }

    /// Subscribe to node changes (as the watcher reports them).
    pub fn node_changes(&self) -> tokio::sync::broadcast::Receiver<NodeChange> {
        self.node_changes.subscribe()
    }

    /// Watch the engine's node events (and look again every `period`, since a node that stops
    /// answering may not produce an event) until `shutdown` turns true.
    pub fn spawn_node_watcher(
        self: &Arc<Self>,
        period: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let orchestrator = Arc::clone(self);
        // A spawn: the watcher follows the event stream for the gateway's lifetime.
        tokio::spawn(async move {
            loop {
                let mut events = orchestrator.swarm.node_events();
                let mut ticker = tokio::time::interval(period);
                loop {
                    tokio::select! {
                        event = events.next() => match event {
                            Some(Ok(_)) => {}
                            Some(Err(e)) => { tracing::warn!(error = %e, "node event stream failed; reconnecting"); break; }
                            None => break,
                        },
                        _ = ticker.tick() => {}
                        _ = shutdown.changed() => return,
                    }
                    if *shutdown.borrow() {
                        return;
                    }
                    if let Err(e) = orchestrator.check_nodes().await {
                        tracing::warn!(error = %e, "checking swarm nodes failed");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        })
    }
}
