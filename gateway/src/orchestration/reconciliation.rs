//! Reconciliation: what runs on the swarm judged against what the ledger authorised, and each
//! difference recorded once as drift.
//!
//! Each of this gateway's TOM-labelled services is compared with the container's current
//! placement on the ledger (service id, image digest, replicas, placement constraint, mounts,
//! network, the node its task runs on); a service no placement authorises is reported (and,
//! with `--remove-unauthorised`, removed), and a placement whose service vanished is recorded
//! `missing`. The ledger's placement status follows what is observed (`running`, `missing`,
//! `stopped`, `unavailable`, `drifted`).
//!
//! Why it is shaped so: reconciliation runs periodically and after every restart, so it must be
//! idempotent. The journal remembers which drift was recorded (keyed by service and the fields
//! that differ), so a pass records only what is new. It never touches a container with an open
//! action (recovery or the action itself owns it), and it stops at the first ledger read that
//! fails or does not decode rather than taking "unreadable" for "not authorised": removing a
//! running service on a misread is the failure it must never have.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tom_contract::model::{DeviceStatus, Entity, Lifecycle, Placement, PlacementStatus};
use tom_contract::requests;
use tom_contract::transaction::Transaction as _;

use super::{truncate, OrchestrationError, Orchestrator, Tracked};
use crate::swarm::{self, ServiceInfo, TaskPhase};

/// One difference between the swarm and the ledger, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub service: String,
    pub container_id: Option<String>,
    pub description: String,
    pub action_taken: String,
    /// The placement status the drift set on the container, if any.
    pub placement_status: Option<PlacementStatus>,
    pub drift_tx: String,
}

/// What a drift record changes on the ledger besides the record itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftUpdate {
    pub placement_status: Option<PlacementStatus>,
    pub authorising_tx: Option<String>,
    pub device_id: Option<String>,
    pub device_status: Option<DeviceStatus>,
}

impl DriftUpdate {
    pub fn placement(status: PlacementStatus, authorising_tx: &str) -> Self {
        DriftUpdate {
            placement_status: Some(status),
            authorising_tx: Some(authorising_tx.to_owned()),
            ..DriftUpdate::default()
        }
    }

    pub fn device(device_id: &str, status: DeviceStatus) -> Self {
        DriftUpdate {
            device_id: Some(device_id.to_owned()),
            device_status: Some(status),
            ..DriftUpdate::default()
        }
    }
}

/// One field in which a service differs from its authorised placement.
struct Difference {
    /// The field's name, as drift descriptions and the journal's drift keys spell it.
    field: &'static str,
    /// What runs and what was authorised.
    detail: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

/// `differences` as a drift description lists them.
fn describe(differences: &[Difference]) -> String {
    differences
        .iter()
        .map(Difference::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// How a service compares with the placement the ledger authorised.
enum Verdict {
    /// The service is the authorised placement's, as created.
    Authorised(Placement),
    /// The placement's own service (or one labelled for it), but changed: each field says how.
    Differs {
        fields: Vec<Difference>,
        placement: Placement,
    },
    /// Nothing on the ledger authorises it.
    Unauthorised(String),
}

/// A service on the swarm that no TOM gateway authorised (`GET /v1/swarm/unauthorised`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnauthorisedService {
    pub service_id: String,
    pub name: String,
    pub image: String,
    pub container_id: Option<String>,
    pub gateway: Option<String>,
    pub why: String,
}

/// What a reconciliation pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    /// TOM-labelled services examined.
    pub services: usize,
    /// Drift recorded in this pass (drift recorded by an earlier pass is not repeated).
    pub drift: Vec<Drift>,
}

impl Orchestrator {
    /// Compare each of this gateway's TOM-labelled services with the placement the ledger
    /// authorised (service id, image digest, replicas, placement constraint, mounts, network,
    /// the node its task runs on) and record each difference once as drift, naming the field.
    /// What the ledger's placement status says follows what is observed (`running`, `missing`,
    /// `stopped`, `unavailable`, `drifted`). With `remove_unauthorised`, every service that is
    /// not what the ledger authorised is removed, including ones reported while the flag was
    /// off; each removal is recorded once.
    pub async fn reconcile(
        &self,
        remove_unauthorised: bool,
    ) -> Result<Reconciliation, OrchestrationError> {
        let in_flight: Vec<String> = self
            .journal_op(|j| j.open_actions())
            .await?
            .into_iter()
            .map(|a| a.kind.container_id().to_owned())
            .collect();
        let services = self.own_services().await?;
        let tracked = self.journal_op(|j| j.tracked()).await?;
        let nodes = self.swarm.nodes().await?;
        let mut report = Reconciliation {
            services: services.len(),
            drift: Vec::new(),
        };
        for service in &services {
            let container_id = service.container_id().unwrap_or_default().to_owned();
            if in_flight.contains(&container_id) {
                continue;
            }
            match self.judge(service, &container_id, &tracked).await? {
                Verdict::Authorised(placement) => {
                    if let Some(drift) = self
                        .observe_running(service, &container_id, &placement, &nodes)
                        .await?
                    {
                        report.drift.push(drift);
                    }
                }
                Verdict::Differs { fields, placement } => {
                    let description = format!(
                        "service {} ({}) of container {container_id} differs from the placement the ledger authorised (tx {} on device {}): {}",
                        service.name, service.id, placement.stamp.tx_id, placement.device, describe(&fields)
                    );
                    let key = format!(
                        "{}:differs:{}",
                        service.id,
                        fields.iter().map(|d| d.field).collect::<Vec<_>>().join(",")
                    );
                    let update = (placement.status != PlacementStatus::Authorised).then(|| {
                        DriftUpdate::placement(PlacementStatus::Drifted, &placement.stamp.tx_id)
                    });
                    report.drift.extend(
                        self.report_unauthorised(
                            service,
                            &key,
                            &container_id,
                            description,
                            update.unwrap_or_default(),
                            remove_unauthorised,
                        )
                        .await?,
                    );
                }
                Verdict::Unauthorised(why) => {
                    let description = format!(
                        "service {} ({}) runs image {} without authorisation: {why}",
                        service.name, service.id, service.image
                    );
                    report.drift.extend(
                        self.report_unauthorised(
                            service,
                            &service.id.clone(),
                            &container_id,
                            description,
                            DriftUpdate::default(),
                            remove_unauthorised,
                        )
                        .await?,
                    );
                }
            }
        }
        // Services TOM placed that are gone although the ledger still says they run.
        for tracked in tracked {
            if in_flight.contains(&tracked.container_id)
                || services.iter().any(|s| s.id == tracked.service_id)
            {
                continue;
            }
            let placement = match self.entity(&tracked.container_id).await? {
                Some(Entity::Container(c)) if c.state == Lifecycle::Joined => c
                    .placement
                    .filter(|p| p.stamp.tx_id == tracked.authorising_tx),
                _ => None,
            };
            let Some(placement) = placement else {
                let container = tracked.container_id.clone();
                self.journal_op(move |j| j.untrack(&container)).await?;
                continue;
            };
            let key = tracked.service_id.clone();
            if placement.status == PlacementStatus::Missing
                || self.journal_op(move |j| j.drift_reported(&key)).await?
            {
                continue;
            }
            let description = format!(
                "service {} ({}) of container {} was removed outside TOM; the ledger's placement on device {} (tx {}) is now recorded as missing",
                tracked.service_name, tracked.service_id, tracked.container_id, tracked.device_id, tracked.authorising_tx
            );
            let action_taken = "none: the placement stands on the ledger (status missing) until an orchestrator re-places or terminates the container".to_owned();
            report.drift.push(
                self.record_drift(
                    Some(&tracked.service_id),
                    &tracked.service_name,
                    Some(&tracked.container_id),
                    description,
                    action_taken,
                    DriftUpdate::placement(PlacementStatus::Missing, &tracked.authorising_tx),
                )
                .await?,
            );
        }
        Ok(report)
    }

    /// Report (once) a service that is not what the ledger authorised and, with `remove`,
    /// remove it (once, even if it was reported earlier while removal was off).
    async fn report_unauthorised(
        &self,
        service: &ServiceInfo,
        key: &str,
        container_id: &str,
        description: String,
        update: DriftUpdate,
        remove: bool,
    ) -> Result<Vec<Drift>, OrchestrationError> {
        let removed_key = format!("{}:removed", service.id);
        let (k, rk) = (key.to_owned(), removed_key.clone());
        let (reported, removed) = self
            .journal_op(move |j| Ok((j.drift_reported(&k)?, j.drift_reported(&rk)?)))
            .await?;
        if reported && (removed || !remove) {
            return Ok(Vec::new());
        }
        let removal = if remove {
            Some(
                self.swarm
                    .remove_service(&service.id)
                    .await
                    .map_err(|e| e.to_string()),
            )
        } else {
            None
        };
        if reported {
            // Reported earlier while removal was off (or failed): record the removal only.
            let Some(Ok(_)) = removal else {
                if let Some(Err(e)) = removal {
                    tracing::warn!(service = %service.name, error = %e, "removing an unauthorised service failed; retrying next pass");
                }
                return Ok(Vec::new());
            };
            let description = format!(
                "service {} ({}), reported earlier as not authorised by the ledger, was removed: {description}",
                service.name, service.id
            );
            return Ok(vec![
                self.record_drift(
                    Some(&removed_key),
                    &service.name,
                    Some(container_id),
                    description,
                    "removed the service".to_owned(),
                    DriftUpdate::default(),
                )
                .await?,
            ]);
        }
        let action_taken = match &removal {
            Some(Ok(_)) => "removed the service".to_owned(),
            Some(Err(e)) => format!("removing the service failed: {e}"),
            None => "none: left running (the operator chose not to remove unauthorised services)"
                .to_owned(),
        };
        let drift = self
            .record_drift(
                Some(key),
                &service.name,
                Some(container_id),
                description,
                action_taken,
                update,
            )
            .await?;
        if let Some(Ok(_)) = removal {
            let tx = drift.drift_tx.clone();
            self.journal_op(move |j| j.mark_drift(&removed_key, &tx))
                .await?;
        }
        Ok(vec![drift])
    }

    /// Record drift if what runs for an authorised service differs from the placement status
    /// the ledger holds: its task runs (again), stopped, runs on another node, or its device
    /// is unavailable.
    async fn observe_running(
        &self,
        service: &ServiceInfo,
        container_id: &str,
        placement: &Placement,
        nodes: &[swarm::NodeInfo],
    ) -> Result<Option<Drift>, OrchestrationError> {
        if placement.status == PlacementStatus::Authorised {
            return Ok(None);
        }
        let node = nodes
            .iter()
            .find(|n| n.device_id() == Some(placement.device.as_str()));
        let tasks = self.swarm.service_tasks(&service.id).await?;
        let (observed, why) = match node {
            None => (
                PlacementStatus::Unavailable,
                format!("no swarm node is bound to device {}", placement.device),
            ),
            Some(n) if !n.is_up() || n.availability != swarm::Availability::Active => (
                PlacementStatus::Unavailable,
                format!(
                    "device {}'s swarm node {} is {} ({})",
                    placement.device, n.id, n.state, n.availability
                ),
            ),
            Some(n) => match tasks.iter().find(|t| t.phase == TaskPhase::Running) {
                Some(t) if t.node_id.as_deref() != Some(n.id.as_str()) => (
                    PlacementStatus::Drifted,
                    format!(
                        "node: task {} runs on swarm node {}, but device {} is swarm node {}",
                        t.id,
                        t.node_id.as_deref().unwrap_or("?"),
                        placement.device,
                        n.id
                    ),
                ),
                Some(t) => (
                    PlacementStatus::Running,
                    format!("task {} runs on swarm node {} again", t.id, n.id),
                ),
                None if tasks.is_empty() || tasks.iter().any(|t| t.phase == TaskPhase::Pending) => {
                    return Ok(None)
                }
                None => {
                    let latest = &tasks[0];
                    let why = latest
                        .error
                        .clone()
                        .unwrap_or_else(|| latest.message.clone());
                    (
                        PlacementStatus::Stopped,
                        format!(
                            "no running task: task {} {}: {why}",
                            latest.id, latest.state
                        ),
                    )
                }
            },
        };
        if observed == placement.status {
            return Ok(None);
        }
        let status = serde_json::to_value(observed)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let description = format!(
            "service {} ({}) of container {container_id} (placement tx {} on device {}): {why}; placement status {status}",
            service.name, service.id, placement.stamp.tx_id, placement.device
        );
        let action_taken = if observed == PlacementStatus::Running {
            "none: the placement runs as authorised".to_owned()
        } else {
            "none: the placement stands on the ledger until an orchestrator re-places or terminates the container".to_owned()
        };
        Ok(Some(
            self.record_drift(
                None,
                &service.name,
                Some(container_id),
                description,
                action_taken,
                DriftUpdate::placement(observed, &placement.stamp.tx_id),
            )
            .await?,
        ))
    }

    /// Judge a service against the placement the ledger authorised.
    async fn judge(
        &self,
        service: &ServiceInfo,
        container_id: &str,
        tracked: &[Tracked],
    ) -> Result<Verdict, OrchestrationError> {
        let tx = service.authorising_tx().unwrap_or("(none)");
        let container = match self.entity(container_id).await? {
            None => {
                return Ok(Verdict::Unauthorised(format!(
                    "the ledger has no container {container_id:?}"
                )))
            }
            Some(Entity::Container(c)) if c.state == Lifecycle::Left => {
                return Ok(Verdict::Unauthorised(format!(
                    "container {container_id} left the ledger ({})",
                    Entity::Container(c.clone()).state_description()
                )))
            }
            Some(Entity::Container(c)) => c,
            Some(other) => {
                return Ok(Verdict::Unauthorised(format!(
                    "{container_id} is a {} on the ledger, not a container",
                    other.entity_type()
                )))
            }
        };
        let placement = match &container.placement {
            Some(p) if p.stamp.tx_id == tx => p.clone(),
            Some(p) => return Ok(Verdict::Unauthorised(format!("its label names tx {tx}, but container {container_id}'s current placement is tx {} on device {}", p.stamp.tx_id, p.device))),
            None => return Ok(Verdict::Unauthorised(format!("container {container_id} has no placement on the ledger (label names tx {tx})"))),
        };
        let own = tracked
            .iter()
            .find(|t| t.container_id == container_id && t.authorising_tx == placement.stamp.tx_id);
        if let Some(t) = own.filter(|t| t.service_id != service.id) {
            return Ok(Verdict::Unauthorised(format!(
                "service id: placement tx {tx} is carried out by service {} ({}), not by this one (its labels are copied)",
                t.service_name, t.service_id
            )));
        }
        let mut fields = Vec::new();
        if service.image != container.digest {
            fields.push(Difference {
                field: "image",
                detail: format!(
                    "runs {}, the ledger authorised {}",
                    service.image, container.digest
                ),
            });
        }
        if service.replicas != Some(1) {
            fields.push(Difference {
                field: "replicas",
                detail: format!(
                    "{}, authorised 1",
                    service
                        .replicas
                        .map_or_else(|| "global".to_owned(), |r| r.to_string())
                ),
            });
        }
        let constraint = swarm::device_constraint(&placement.device);
        if service.constraints != [constraint.clone()] {
            fields.push(Difference {
                field: "placement constraint",
                detail: format!("{:?}, authorised [{constraint:?}]", service.constraints),
            });
        }
        if let Some(mounts) = own.and_then(|t| t.mounts.as_ref()) {
            let (mut now, mut then) = (service.mounts.clone(), mounts.clone());
            now.sort();
            then.sort();
            if now != then {
                fields.push(Difference {
                    field: "mounts",
                    detail: format!("{now:?}, authorised {then:?}"),
                });
            }
        }
        if let Some(networks) = own.and_then(|t| t.networks.as_ref()) {
            if service.networks != *networks {
                fields.push(Difference {
                    field: "network",
                    detail: format!("{:?}, authorised {networks:?}", service.networks),
                });
            }
        }
        Ok(if fields.is_empty() {
            Verdict::Authorised(placement)
        } else {
            Verdict::Differs { fields, placement }
        })
    }

    /// Every service on the swarm that no TOM gateway authorised: services without TOM's
    /// labels, and TOM-labelled ones (of any gateway instance) that do not match the placement
    /// the ledger records (container, authorising tx, image digest, replicas, constraint), or,
    /// for this gateway's own, that are not the service it created for that placement.
    pub async fn unauthorised_services(
        &self,
    ) -> Result<Vec<UnauthorisedService>, OrchestrationError> {
        let tracked = self.journal_op(|j| j.tracked()).await?;
        let mut out = Vec::new();
        for service in self.swarm.all_services().await? {
            let why = match (service.container_id(), service.gateway()) {
                (None, _) => Some("no TOM labels: no TOM gateway placed it (gateways ignore it)".to_owned()),
                (Some(_), None) => Some("no gateway-instance label (tom.gateway): no TOM gateway placed it (gateways ignore it)".to_owned()),
                (Some(container), Some(gateway)) => {
                    let own = gateway == self.config.instance;
                    let tracked: &[Tracked] = if own { &tracked } else { &[] };
                    match self.judge(&service, container, tracked).await? {
                        Verdict::Authorised(_) => None,
                        Verdict::Differs { fields, .. } => Some(format!("differs from its authorised placement: {}", describe(&fields))),
                        Verdict::Unauthorised(why) => Some(why),
                    }
                }
            };
            if let Some(why) = why {
                out.push(UnauthorisedService {
                    service_id: service.id.clone(),
                    name: service.name.clone(),
                    image: service.image.clone(),
                    container_id: service.container_id().map(str::to_owned),
                    gateway: service.gateway().map(str::to_owned),
                    why,
                });
            }
        }
        Ok(out)
    }

    pub(super) async fn record_drift(
        &self,
        journal_key: Option<&str>,
        service_name: &str,
        container_id: Option<&str>,
        description: String,
        action_taken: String,
        update: DriftUpdate,
    ) -> Result<Drift, OrchestrationError> {
        let request = requests::RecordDrift {
            service: service_name.to_owned(),
            container_id: container_id.filter(|c| !c.is_empty()).map(str::to_owned),
            description: truncate(&description, 1000),
            action_taken: Some(truncate(&action_taken, 1000)),
            placement_status: update.placement_status,
            authorising_tx: update.authorising_tx,
            device_id: update.device_id,
            device_status: update.device_status,
        };
        let tx = self
            .submit(&self.identity, requests::RecordDrift::NAME, &request)
            .await?
            .tx_id;
        if let Some(key) = journal_key {
            let (key, drift_tx) = (key.to_owned(), tx.clone());
            self.journal_op(move |j| j.mark_drift(&key, &drift_tx))
                .await?;
        }
        tracing::warn!(service = %service_name, %description, %action_taken, tx = %tx, "drift recorded");
        Ok(Drift {
            service: service_name.to_owned(),
            container_id: request.container_id,
            description,
            action_taken,
            placement_status: request.placement_status,
            drift_tx: tx,
        })
    }

    /// Run [`Self::reconcile`] every `period` until `shutdown` turns true.
    pub fn spawn_reconciler(
        self: &Arc<Self>,
        period: Duration,
        remove_unauthorised: bool,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let orchestrator = Arc::clone(self);
        // A spawn: reconciliation runs beside request handling for the gateway's lifetime.
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        if let Err(e) = orchestrator.reconcile(remove_unauthorised).await {
                            tracing::warn!(error = %e, "reconciliation failed; retrying next period");
                        }
                    }
                    _ = shutdown.changed() => break,
                }
                if *shutdown.borrow() {
                    break;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{describe, Difference};

    #[test]
    fn differences_read_as_field_then_detail() {
        let fields = [
            Difference {
                field: "image",
                detail: "runs sha256:b, the ledger authorised sha256:a".into(),
            },
            Difference {
                field: "replicas",
                detail: "3, authorised 1".into(),
            },
        ];
        assert_eq!(
            describe(&fields),
            "image: runs sha256:b, the ledger authorised sha256:a; replicas: 3, authorised 1"
        );
    }
}
