//! Start-up: what a gateway with `--swarm` does before it serves, and what it leaves running.
//!
//! The order is the point. Open actions a previous run left in the journal are resolved first
//! ([`Orchestrator::recover`]), before anything new can start for the same containers; node
//! labels are made to follow the ledger next, so no placement lands on a node whose device is
//! no longer joined; one reconciliation pass then records what changed on the swarm while the
//! gateway was down. Only then do the node watcher and the periodic reconciler start. Any step
//! failing fails the start: a gateway that cannot tell what it left half-done must not serve.

use std::sync::Arc;
use std::time::Duration;

use super::failpoints::failpoint_from_env;
use super::port::ContainerActions;
use super::{actions, Journal, OrchestrationError, Orchestrator, OrchestratorConfig};
use crate::ledger::{Ledger, SigningIdentity};
use crate::swarm::{self, SwarmDriver};

/// What [`start`] leaves running beside the REST server.
pub struct Started {
    pub orchestrator: Arc<Orchestrator>,
    /// Flip to true to stop the node watcher and the reconciler.
    pub stop: tokio::sync::watch::Sender<bool>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Start Swarm orchestration for a gateway: connect to the local engine (negotiating its API
/// version), open the journal at `<data_dir>/orchestration.redb`, resolve the actions a previous
/// run left open, reconcile once, then keep watching nodes and reconciling every `reconcile`.
pub async fn start(
    ledger: Arc<dyn Ledger>,
    identity: SigningIdentity,
    data_dir: &std::path::Path,
    config: OrchestratorConfig,
    reconcile: Duration,
    remove_unauthorised: bool,
) -> Result<Started, OrchestrationError> {
    let swarm = Arc::new(swarm::docker::BollardSwarm::connect().await?);
    let journal = Journal::open(&data_dir.join("orchestration.redb"))?;
    let mut orchestrator = Orchestrator::new(ledger, swarm.clone(), journal, identity, config);
    if let Some(hook) = failpoint_from_env() {
        orchestrator = orchestrator.with_pause_hook(hook);
    }
    let orchestrator = Arc::new(orchestrator);
    for recovered in orchestrator.recover().await? {
        tracing::info!(action = recovered.action_id, container = %recovered.container_id, resolution = ?recovered.resolution, "resolved an action left open by the previous run");
    }
    // Node labels follow the ledger: a label an earlier run left for a device that is not
    // joined (or is bound elsewhere) goes before anything is placed or watched.
    for change in orchestrator.sync_node_labels().await? {
        tracing::info!(%change, "node label made to follow the ledger");
    }
    let report = orchestrator.reconcile(remove_unauthorised).await?;
    tracing::info!(services = report.services, drift = report.drift.len(), swarm = %swarm.describe(), "swarm orchestration started");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks = vec![
        orchestrator.spawn_node_watcher(Duration::from_secs(30), stopped.clone()),
        orchestrator.spawn_reconciler(reconcile, remove_unauthorised, stopped),
    ];
    Ok(Started {
        orchestrator,
        stop,
        tasks,
    })
}

impl Started {
    /// The REST API's container-actions port, backed by this orchestrator.
    pub fn actions(&self) -> Arc<dyn ContainerActions> {
        Arc::new(actions::SwarmActions::new(self.orchestrator.clone()))
    }

    /// Stop the watcher and the reconciler and wait for them (in-flight placements finish with
    /// the requests that carry them; anything cut short is in the journal).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// [`start`] as `tom serve --swarm` uses it: workloads reach the gateway at `listen`, find their
/// per-container configuration under `<data_dir>/workloads/<container id>/` (mounted at
/// `/etc/tom` when it exists) and keep data bytes in `<data_dir>/workload-data` (at `/data`).
pub async fn start_for_gateway(
    ledger: Arc<dyn Ledger>,
    identity: SigningIdentity,
    data_dir: &std::path::Path,
    listen: std::net::SocketAddr,
    reconcile: Duration,
    remove_unauthorised: bool,
) -> Result<Started, OrchestrationError> {
    let workload_data = data_dir.join("workload-data");
    std::fs::create_dir_all(&workload_data).map_err(|e| {
        OrchestrationError::Invalid(format!("cannot create {}: {e}", workload_data.display()))
    })?;
    let config = OrchestratorConfig {
        gateway_url: Some(format!("http://{listen}")),
        workloads_dir: Some(data_dir.join("workloads")),
        data_dir: Some(workload_data),
        ..OrchestratorConfig::default()
    };
    start(
        ledger,
        identity,
        data_dir,
        config,
        reconcile,
        remove_unauthorised,
    )
    .await
}
