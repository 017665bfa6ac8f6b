//! Orchestration on Docker Swarm as a crash-safe protocol around the ledger.
//!
//! The invariant this module keeps: **no Swarm action happens without its ledger record, and no
//! record is left claiming what did not happen.** A placement is therefore four steps, each
//! journalled (see [`journal`]) before the next begins:
//!
//! 1. submit `PlaceContainer`: the contract's guards authorise (or refuse) the placement;
//! 2. create the Swarm service: image pinned to the digest the ledger recorded for the
//!    container, one replica, constrained to the device's node, labelled with the container id
//!    and the authorising transaction;
//! 3. wait until its task runs or fails;
//! 4. submit `RecordOutcome` (`running`, or `failed` with Docker's own error; a failed
//!    service is removed first, so nothing runs that the ledger does not show).
//!
//! A termination is the leave transaction (`TerminateContainer`), then the service's removal
//! and a wait until the engine has none of its containers left (the remove call returns before
//! they have stopped; [`OrchestratorConfig::removal_timeout`] bounds the wait), then
//! `RecordOutcome` (`removed`, or `failed` naming the service whose containers remain). If the gateway dies between steps,
//! [`Orchestrator::recover`] finishes or rolls back each open action at the next start and the
//! ledger records which. [`Orchestrator::reconcile`] compares the swarm's TOM-labelled services
//! with the ledger and records drift; [`nodes`] turns Swarm node events into device lifecycle
//! transitions.
//!
//! This module never decides what is authorised: the contract does. It never holds a lock
//! across an `.await`.

pub mod actions;
pub mod journal;
#[cfg(test)]
mod multinode;
pub mod nodes;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tom_contract::model::{DeviceStatus, Entity, Lifecycle, Placement, PlacementStatus};
use tom_contract::requests;

use crate::ledger::{Ledger, LedgerError, SigningIdentity, Submitted};
use crate::swarm::{
    self, BindMount, ServiceInfo, ServiceRequest, SwarmDriver, SwarmError, TaskInfo, TaskPhase,
};

pub use journal::{Action, ActionKind, Journal, Step, Tracked};

/// Why an orchestration action failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrchestrationError {
    /// The ledger refused or could not take a transaction (nothing happened on the swarm).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The swarm could not be asked (outside a placement's recorded steps).
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    #[error("orchestration journal: {0}")]
    Journal(String),
    /// The placement was authorised but the swarm could not run it; the ledger says so.
    #[error("placement of container {container_id} on device {device_id} (tx {authorising_tx}) failed: {detail} (recorded as failed in tx {outcome_tx})")]
    PlacementFailed {
        container_id: String,
        device_id: String,
        authorising_tx: String,
        outcome_tx: String,
        detail: String,
    },
    /// The container left, but its service could not be removed; the ledger says so.
    #[error("container {container_id} left in tx {leave_tx} but its service could not be removed: {detail} (recorded as failed in tx {outcome_tx})")]
    RemovalFailed {
        container_id: String,
        leave_tx: String,
        outcome_tx: String,
        detail: String,
    },
    /// The request cannot be carried out as asked (e.g. a device that has not joined).
    #[error("{0}")]
    Invalid(String),
}

/// Tunables; every field has a default that suits a single small swarm.
#[derive(Debug, Clone)]
pub struct OrchestratorConfig {
    /// How long step 3 waits for a task to run before the placement counts as failed (60 s).
    pub run_timeout: Duration,
    /// How often task states are polled while waiting (200 ms).
    pub poll_interval: Duration,
    /// How long a termination waits, after removing a service, for the engine to have no
    /// container of it left before the termination counts as failed (30 s).
    pub removal_timeout: Duration,
    /// Attach services to the engine's `host` network so workloads reach a loopback gateway (true).
    pub host_network: bool,
    /// This gateway's instance name, written as the `tom.gateway` label on every service it
    /// creates; reconciliation and recovery consider only services carrying it ("tom").
    pub instance: String,
    /// Per-container workload configuration for placements that carry none (REST): if set,
    /// `<workloads_dir>/<container id>/` is bind-mounted read-only at `/etc/tom` (None).
    pub workloads_dir: Option<std::path::PathBuf>,
    /// If set, bind-mounted at `/data` in every service: where workloads keep data bytes (None).
    pub data_dir: Option<std::path::PathBuf>,
    /// Passed to workloads as `TOM_GATEWAY`: the gateway's own URL (None).
    pub gateway_url: Option<String>,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        OrchestratorConfig {
            run_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(200),
            removal_timeout: Duration::from_secs(30),
            host_network: true,
            instance: "tom".into(),
            workloads_dir: None,
            data_dir: None,
            gateway_url: None,
        }
    }
}

/// How a workload is started: everything the ledger does not fix (the image is fixed by the
/// container's recorded digest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub mounts: Vec<BindMount>,
}

/// A placement that runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placed {
    pub container_id: String,
    pub device_id: String,
    pub authorising_tx: String,
    pub outcome_tx: String,
    pub service_id: String,
    pub service_name: String,
    pub task_id: String,
    pub node_id: Option<String>,
    /// The PLACE transaction as committed (None when recovery finished the placement).
    #[serde(skip)]
    pub authorising: Option<Submitted>,
    /// The RecordOutcome transaction as committed.
    #[serde(skip)]
    pub outcome: Submitted,
}

/// A completed termination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Terminated {
    pub container_id: String,
    pub leave_tx: String,
    pub outcome_tx: String,
    /// Names of the services removed (empty if none was running).
    pub removed_services: Vec<String>,
    /// The leave transaction as committed (None when recovery finished the termination).
    #[serde(skip)]
    pub authorising: Option<Submitted>,
    /// The RecordOutcome transaction as committed.
    #[serde(skip)]
    pub outcome: Submitted,
}

/// How recovery resolved an open action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The action was carried to its end (service running / removed) and the outcome recorded.
    Finished,
    /// The authorised placement was undone and recorded as failed.
    RolledBack,
    /// Nothing had been committed; nothing to record.
    Abandoned,
}

/// One open action resolved by [`Orchestrator::recover`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovered {
    pub action_id: u64,
    pub action: &'static str,
    pub container_id: String,
    pub resolution: Resolution,
    pub detail: String,
    /// The transaction that recorded the resolution, if one was needed.
    pub outcome_tx: Option<String>,
}

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

/// How a service compares with the placement the ledger authorised.
enum Verdict {
    /// The service is the authorised placement's, as created.
    Authorised(Placement),
    /// The placement's own service (or one labelled for it), but changed: each field says how.
    Differs {
        fields: Vec<String>,
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

/// Test hook: called with each step's name; returning true freezes the action there forever, as
/// if the process had died at that point (the test then drops the orchestrator).
pub type PauseHook = Arc<dyn Fn(&'static str) -> bool + Send + Sync>;

/// Carries out placements and terminations on the swarm, keeping the ledger truthful.
pub struct Orchestrator {
    ledger: Arc<dyn Ledger>,
    swarm: Arc<dyn SwarmDriver>,
    journal: Journal,
    /// The gateway's own orchestrator identity: signs what no caller asked for (recovery,
    /// drift, node departures).
    identity: SigningIdentity,
    config: OrchestratorConfig,
    pause: Option<PauseHook>,
    /// Last seen state of each node, for the node watcher to diff against. A std Mutex: only
    /// touched in short synchronous sections.
    nodes: Mutex<BTreeMap<String, swarm::NodeInfo>>,
    node_changes: tokio::sync::broadcast::Sender<nodes::NodeChange>,
}

fn unix_now() -> i64 {
    crate::ledger::memory::now().seconds
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, OrchestrationError> {
    serde_json::to_vec(value)
        .map_err(|e| OrchestrationError::Invalid(format!("cannot encode request: {e}")))
}

impl Orchestrator {
    pub fn new(
        ledger: Arc<dyn Ledger>,
        swarm: Arc<dyn SwarmDriver>,
        journal: Journal,
        identity: SigningIdentity,
        config: OrchestratorConfig,
    ) -> Self {
        Orchestrator {
            ledger,
            swarm,
            journal,
            identity,
            config,
            pause: None,
            nodes: Mutex::new(BTreeMap::new()),
            node_changes: tokio::sync::broadcast::channel(64).0,
        }
    }

    /// Install a [`PauseHook`] (crash tests only).
    pub fn with_pause_hook(mut self, hook: PauseHook) -> Self {
        self.pause = Some(hook);
        self
    }

    pub fn swarm(&self) -> &Arc<dyn SwarmDriver> {
        &self.swarm
    }

    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    async fn checkpoint(&self, step: &'static str) {
        if let Some(hook) = &self.pause {
            if hook(step) {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Run a journal operation off the async threads: each one fsyncs.
    async fn journal_op<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Journal) -> Result<R, OrchestrationError> + Send + 'static,
    ) -> Result<R, OrchestrationError> {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || f(&journal))
            .await
            .map_err(|e| OrchestrationError::Journal(format!("journal task failed: {e}")))?
    }

    async fn submit<T: Serialize>(
        &self,
        identity: &SigningIdentity,
        function: &str,
        request: &T,
    ) -> Result<Submitted, OrchestrationError> {
        Ok(self
            .ledger
            .submit(identity, function, &json(request)?)
            .await?)
    }

    /// A device or container as the ledger has it now; `None` if there is no such entity.
    pub async fn entity(&self, id: &str) -> Result<Option<Entity>, OrchestrationError> {
        let request = json(&requests::ById { id: id.to_owned() })?;
        match self
            .ledger
            .evaluate(&self.identity, "GetEntity", &request)
            .await
        {
            // A reply that does not decode is an error, never "no such entity": reading a
            // schema drift as absence would let reconciliation remove a running service.
            Ok(bytes) => serde_json::from_slice::<Entity>(&bytes)
                .map(Some)
                .map_err(|e| {
                    OrchestrationError::Ledger(LedgerError::Internal(format!(
                        "entity {id} as the ledger returned it does not decode: {e}"
                    )))
                }),
            Err(LedgerError::Rejected { status: 404, .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn record_outcome(
        &self,
        container_id: &str,
        action: &str,
        authorising_tx: &str,
        outcome: &str,
        detail: &str,
    ) -> Result<String, OrchestrationError> {
        Ok(self
            .record_outcome_submitted(container_id, action, authorising_tx, outcome, detail)
            .await?
            .tx_id)
    }

    async fn record_outcome_submitted(
        &self,
        container_id: &str,
        action: &str,
        authorising_tx: &str,
        outcome: &str,
        detail: &str,
    ) -> Result<Submitted, OrchestrationError> {
        let request = requests::RecordOutcome {
            container_id: container_id.to_owned(),
            action: action.into(),
            authorising_tx: authorising_tx.to_owned(),
            outcome: outcome.into(),
            detail: truncate(detail, 4000),
        };
        self.submit(&self.identity, "RecordOutcome", &request).await
    }

    /// Place `container_id` on `device_id` with no extra arguments. See [`Self::place_with`].
    pub async fn place(
        &self,
        identity: &SigningIdentity,
        container_id: &str,
        device_id: &str,
    ) -> Result<Placed, OrchestrationError> {
        self.place_with(identity, container_id, device_id, &Workload::default())
            .await
    }

    /// The placement protocol (module docs): authorise, create, wait, record.
    pub async fn place_with(
        &self,
        identity: &SigningIdentity,
        container_id: &str,
        device_id: &str,
        workload: &Workload,
    ) -> Result<Placed, OrchestrationError> {
        let kind = ActionKind::Place {
            container_id: container_id.to_owned(),
            device_id: device_id.to_owned(),
        };
        let started = unix_now();
        let mut action = self.journal_op(move |j| j.begin(kind, started)).await?;

        // (1) Authorise.
        let request = requests::PlaceContainer {
            container_id: container_id.to_owned(),
            device_id: device_id.to_owned(),
        };
        let authorising = match self.submit(identity, "PlaceContainer", &request).await {
            Ok(submitted) => submitted,
            Err(e) => {
                // A refusal means nothing happened; any other failure leaves the action open
                // for recovery, which asks the ledger whether the PLACE committed.
                if matches!(
                    e,
                    OrchestrationError::Ledger(
                        LedgerError::Rejected { .. } | LedgerError::Conflict { .. }
                    )
                ) {
                    let id = action.id;
                    self.journal_op(move |j| j.close(id)).await?;
                }
                return Err(e);
            }
        };
        // (Crash tests: PLACE committed, but the journal does not know its tx id yet.)
        self.checkpoint("submitted").await;
        action.step = Step::Authorised;
        let tx = authorising.tx_id.clone();
        action.authorising_tx = Some(tx.clone());
        let journalled = action.clone();
        self.journal_op(move |j| j.update(&journalled)).await?;
        self.checkpoint("authorised").await;

        // (2) Create the service, pinned to the digest the ledger recorded.
        let service_name = swarm::service_name(container_id, &tx);
        let created = match self
            .service_request(container_id, device_id, &tx, &service_name, workload)
            .await
        {
            Ok(request) => self
                .swarm
                .create_service(&request)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let service_id = match created {
            Ok(id) => id,
            Err(detail) => {
                return Err(self
                    .fail_placement(&action, None, &format!("service create: {detail}"))
                    .await)
            }
        };
        action.step = Step::SwarmDone;
        action.service_id = Some(service_id.clone());
        action.service_name = Some(service_name.clone());
        let journalled = action.clone();
        self.journal_op(move |j| j.update(&journalled)).await?;
        self.checkpoint("created").await;

        // (3) Wait until it runs or fails, then (4) record.
        let mut placed = self.finish_placement(&action, "").await?;
        placed.authorising = Some(authorising);
        Ok(placed)
    }

    /// Steps 3 and 4 of a placement whose service exists (also used by recovery).
    async fn finish_placement(
        &self,
        action: &Action,
        note: &str,
    ) -> Result<Placed, OrchestrationError> {
        let (
            ActionKind::Place {
                container_id,
                device_id,
            },
            Some(tx),
            Some(service_id),
            Some(service_name),
        ) = (
            &action.kind,
            &action.authorising_tx,
            &action.service_id,
            &action.service_name,
        )
        else {
            return Err(OrchestrationError::Journal(format!(
                "action {} is not a created placement",
                action.id
            )));
        };
        let task = match self.wait_for_task(service_id).await {
            Ok(Ok(task)) => task,
            Ok(Err(detail)) | Err(detail) => {
                return Err(self.fail_placement(action, Some(service_id), &detail).await)
            }
        };
        let node = task.node_id.clone().unwrap_or_else(|| "?".into());
        let detail = format!(
            "service {service_name} ({service_id}) task {} running on swarm node {node}{note}",
            task.id
        );
        let outcome = self
            .record_outcome_submitted(container_id, "place", tx, "running", &detail)
            .await?;
        // What the service was created with, as the engine reports it now that it runs: the
        // baseline reconciliation compares mounts and networks with.
        let created = self
            .swarm
            .tom_services()
            .await
            .ok()
            .and_then(|all| all.into_iter().find(|s| s.id == *service_id));
        let tracked = Tracked {
            container_id: container_id.clone(),
            device_id: device_id.clone(),
            authorising_tx: tx.clone(),
            service_id: service_id.clone(),
            service_name: service_name.clone(),
            mounts: created.as_ref().map(|s| s.mounts.clone()),
            networks: created.map(|s| s.networks),
        };
        // A re-placement: the old service goes only now that the new one runs.
        let previous = self
            .journal_op(|j| j.tracked())
            .await?
            .into_iter()
            .find(|t| t.container_id == *container_id && t.service_id != *service_id);
        if let Some(old) = previous {
            if let Err(e) = self.swarm.remove_service(&old.service_id).await {
                tracing::warn!(container = %container_id, service = %old.service_name, error = %e, "could not remove the service of the previous placement; reconciliation will report it");
            }
        }
        let id = action.id;
        self.journal_op(move |j| {
            j.track(&tracked)?;
            j.close(id)
        })
        .await?;
        Ok(Placed {
            container_id: container_id.clone(),
            device_id: device_id.clone(),
            authorising_tx: tx.clone(),
            outcome_tx: outcome.tx_id.clone(),
            service_id: service_id.clone(),
            service_name: service_name.clone(),
            task_id: task.id,
            node_id: task.node_id,
            authorising: None,
            outcome,
        })
    }

    /// Undo an authorised placement that cannot run: remove its service (if any), record the
    /// failure with the engine's words, close the action. Returns the error for the caller.
    async fn fail_placement(
        &self,
        action: &Action,
        service_id: Option<&str>,
        detail: &str,
    ) -> OrchestrationError {
        let (
            ActionKind::Place {
                container_id,
                device_id,
            },
            Some(tx),
        ) = (&action.kind, &action.authorising_tx)
        else {
            return OrchestrationError::Journal(format!(
                "action {} is not an authorised placement",
                action.id
            ));
        };
        let mut detail = detail.to_owned();
        if let Some(service) = service_id {
            if let Err(e) = self.swarm.remove_service(service).await {
                detail.push_str(&format!("; removing the failed service also failed: {e}"));
            }
        }
        match self
            .record_outcome(container_id, "place", tx, "failed", &detail)
            .await
        {
            Ok(outcome_tx) => {
                let id = action.id;
                if let Err(e) = self.journal_op(move |j| j.close(id)).await {
                    return e;
                }
                OrchestrationError::PlacementFailed {
                    container_id: container_id.clone(),
                    device_id: device_id.clone(),
                    authorising_tx: tx.clone(),
                    outcome_tx,
                    detail,
                }
            }
            // The action stays open: recovery records the failure once the ledger is back.
            Err(e) => e,
        }
    }

    async fn service_request(
        &self,
        container_id: &str,
        device_id: &str,
        tx: &str,
        name: &str,
        workload: &Workload,
    ) -> Result<ServiceRequest, OrchestrationError> {
        let Some(Entity::Container(container)) = self.entity(container_id).await? else {
            return Err(OrchestrationError::Invalid(format!(
                "container {container_id} is not on the ledger"
            )));
        };
        let labels = BTreeMap::from([
            (swarm::LABEL_CONTAINER.to_owned(), container_id.to_owned()),
            (swarm::LABEL_AUTHORISING_TX.to_owned(), tx.to_owned()),
            (swarm::LABEL_DEVICE.to_owned(), device_id.to_owned()),
            (
                swarm::LABEL_GATEWAY.to_owned(),
                self.config.instance.clone(),
            ),
            ("tom.image".to_owned(), container.image.clone()),
        ]);
        // What every workload learns about itself; the caller's own settings come after, so
        // they win.
        let mut env = vec![
            format!("TOM_CONTAINER_ID={container_id}"),
            format!("TOM_ACTIVITY={container_id}"),
            format!("TOM_DEVICE_ID={device_id}"),
        ];
        if let Some(url) = &self.config.gateway_url {
            env.push(format!("TOM_GATEWAY={url}"));
        }
        env.extend(workload.env.iter().cloned());
        let mut mounts = Vec::new();
        // Only a configuration directory that exists is mounted: the engine refuses a bind
        // mount of a missing path, and a workload without one runs on its image's defaults.
        if let Some(dir) = self
            .config
            .workloads_dir
            .as_ref()
            .filter(|d| d.join(container_id).is_dir())
        {
            mounts.push(BindMount {
                source: dir.join(container_id).display().to_string(),
                target: "/etc/tom".into(),
                read_only: true,
            });
        }
        if let Some(dir) = &self.config.data_dir {
            mounts.push(BindMount {
                source: dir.display().to_string(),
                target: "/data".into(),
                read_only: false,
            });
        }
        mounts.extend(workload.mounts.iter().cloned());
        Ok(ServiceRequest {
            name: name.to_owned(),
            // The content digest the ledger recorded is the image reference: the engine runs
            // exactly that image or nothing (see the module docs of `swarm` on local images).
            image: container.digest.clone(),
            device_id: device_id.to_owned(),
            labels,
            args: workload.args.clone(),
            env,
            mounts,
            host_network: self.config.host_network,
        })
    }

    /// The TOM services this gateway instance created (others' are none of its business).
    async fn own_services(&self) -> Result<Vec<ServiceInfo>, SwarmError> {
        let mut services = self.swarm.tom_services().await?;
        services.retain(|s| s.gateway() == Some(self.config.instance.as_str()));
        Ok(services)
    }

    /// Poll the service's tasks until one runs (`Ok(Ok)`) or fails (`Ok(Err(engine's words))`).
    async fn wait_for_task(&self, service_id: &str) -> Result<Result<TaskInfo, String>, String> {
        let deadline = Instant::now() + self.config.run_timeout;
        loop {
            let tasks = self
                .swarm
                .service_tasks(service_id)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(task) = tasks.iter().find(|t| t.phase == TaskPhase::Running) {
                return Ok(Ok(task.clone()));
            }
            if let Some(task) = tasks
                .iter()
                .find(|t| matches!(t.phase, TaskPhase::Failed | TaskPhase::Stopped))
            {
                let why = task.error.clone().unwrap_or_else(|| task.message.clone());
                return Ok(Err(format!("task {} {}: {why}", task.id, task.state)));
            }
            if Instant::now() >= deadline {
                let latest = tasks.first().map_or("no task yet".to_owned(), |t| {
                    format!("task {} {} ({})", t.id, t.state, t.message)
                });
                return Ok(Err(format!(
                    "no task was running after {} s; latest: {latest}",
                    self.config.run_timeout.as_secs()
                )));
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// The termination protocol: leave transaction, remove the service and wait until its
    /// containers are gone, record completion.
    pub async fn terminate_container(
        &self,
        identity: &SigningIdentity,
        container_id: &str,
        reason: Option<&str>,
    ) -> Result<Terminated, OrchestrationError> {
        let kind = ActionKind::Terminate {
            container_id: container_id.to_owned(),
            reason: reason.map(str::to_owned),
        };
        let started = unix_now();
        let mut action = self.journal_op(move |j| j.begin(kind, started)).await?;
        let request = requests::TerminateEntity {
            id: container_id.to_owned(),
            reason: reason.map(str::to_owned),
        };
        let authorising = match self.submit(identity, "TerminateContainer", &request).await {
            Ok(submitted) => submitted,
            Err(e) => {
                if matches!(
                    e,
                    OrchestrationError::Ledger(
                        LedgerError::Rejected { .. } | LedgerError::Conflict { .. }
                    )
                ) {
                    let id = action.id;
                    self.journal_op(move |j| j.close(id)).await?;
                }
                return Err(e);
            }
        };
        action.step = Step::Authorised;
        action.authorising_tx = Some(authorising.tx_id.clone());
        let journalled = action.clone();
        self.journal_op(move |j| j.update(&journalled)).await?;
        self.checkpoint("left").await;
        let mut terminated = self.finish_termination(&action, "").await?;
        terminated.authorising = Some(authorising);
        Ok(terminated)
    }

    async fn finish_termination(
        &self,
        action: &Action,
        note: &str,
    ) -> Result<Terminated, OrchestrationError> {
        let (ActionKind::Terminate { container_id, .. }, Some(tx)) =
            (&action.kind, &action.authorising_tx)
        else {
            return Err(OrchestrationError::Journal(format!(
                "action {} is not an authorised termination",
                action.id
            )));
        };
        let mut removed = Vec::new();
        let mut failure = None;
        match self.container_services(container_id).await {
            Ok(services) => {
                for service in &services {
                    if let Err(e) = self.swarm.remove_service(&service.id).await {
                        failure = Some(format!("removing service {}: {e}", service.name));
                        continue;
                    }
                    // The remove call returns once the managers dropped the service; the
                    // workload is only gone when the engine has no container of it left.
                    match self
                        .swarm
                        .await_containers_gone(
                            &service.id,
                            &service.name,
                            self.config.poll_interval,
                            self.config.removal_timeout,
                        )
                        .await
                    {
                        Ok(()) => removed.push(service.name.clone()),
                        Err(e) => failure = Some(e.to_string()),
                    }
                }
            }
            Err(e) => failure = Some(format!("listing services: {e}")),
        }
        let (outcome, detail) = match &failure {
            None if removed.is_empty() => ("removed", format!("no service was running{note}")),
            None => (
                "removed",
                format!("removed service {}{note}", removed.join(", ")),
            ),
            Some(why) => ("failed", format!("{why}{note}")),
        };
        let outcome = self
            .record_outcome_submitted(container_id, "terminate", tx, outcome, &detail)
            .await?;
        let id = action.id;
        let container = container_id.clone();
        self.journal_op(move |j| {
            j.untrack(&container)?;
            j.close(id)
        })
        .await?;
        match failure {
            None => Ok(Terminated {
                container_id: container_id.clone(),
                leave_tx: tx.clone(),
                outcome_tx: outcome.tx_id.clone(),
                removed_services: removed,
                authorising: None,
                outcome,
            }),
            Some(detail) => Err(OrchestrationError::RemovalFailed {
                container_id: container_id.clone(),
                leave_tx: tx.clone(),
                outcome_tx: outcome.tx_id,
                detail,
            }),
        }
    }

    /// Resolve every action a previous run left open (call once at start, before serving).
    pub async fn recover(&self) -> Result<Vec<Recovered>, OrchestrationError> {
        let mut report = Vec::new();
        for action in self.journal_op(|j| j.open_actions()).await? {
            let recovered = match &action.kind {
                ActionKind::Place { .. } => self.recover_placement(action).await?,
                ActionKind::Terminate { .. } => self.recover_termination(action).await?,
            };
            tracing::info!(action = recovered.action_id, container = %recovered.container_id, resolution = ?recovered.resolution, detail = %recovered.detail, "recovered an open action");
            report.push(recovered);
        }
        Ok(report)
    }

    async fn recover_placement(&self, mut action: Action) -> Result<Recovered, OrchestrationError> {
        let ActionKind::Place {
            container_id,
            device_id,
        } = action.kind.clone()
        else {
            return Err(OrchestrationError::Journal(format!(
                "action {} is not a placement",
                action.id
            )));
        };
        let done = |resolution, detail: String, outcome_tx| Recovered {
            action_id: action.id,
            action: "place",
            container_id: container_id.clone(),
            resolution,
            detail,
            outcome_tx,
        };
        let placement = match self.entity(&container_id).await? {
            Some(Entity::Container(c)) => c.placement,
            _ => None,
        };
        // A placement begun but never journalled as authorised: did the PLACE commit? It did if
        // the container's current placement is on this device, unreported, and no older than
        // the action.
        if action.authorising_tx.is_none() {
            match placement.as_ref().filter(|p| {
                p.device == device_id
                    && p.status == PlacementStatus::Authorised
                    && p.stamp.at.seconds >= action.started_at - 1
            }) {
                Some(p) => action.authorising_tx = Some(p.stamp.tx_id.clone()),
                None => {
                    let id = action.id;
                    self.journal_op(move |j| j.close(id)).await?;
                    return Ok(done(
                        Resolution::Abandoned,
                        "the PLACE transaction never committed; nothing ran".into(),
                        None,
                    ));
                }
            }
        }
        let tx = action.authorising_tx.clone().unwrap_or_default();
        let service = self
            .own_services()
            .await?
            .into_iter()
            .find(|s| s.authorising_tx() == Some(tx.as_str()));
        let current = placement.filter(|p| p.stamp.tx_id == tx);
        match (current, service) {
            // Superseded or already reported failed: nothing of this placement may run.
            (None, service) => {
                if let Some(s) = &service {
                    self.swarm.remove_service(&s.id).await?;
                }
                let id = action.id;
                self.journal_op(move |j| j.close(id)).await?;
                Ok(done(
                    Resolution::RolledBack,
                    format!(
                        "placement tx {tx} is no longer current on the ledger; its service was {}",
                        if service.is_some() {
                            "removed"
                        } else {
                            "never created"
                        }
                    ),
                    None,
                ))
            }
            (Some(p), service) if p.status == PlacementStatus::Running => {
                // The outcome committed before the crash; only the journal was behind.
                if let Some(s) = service {
                    let tracked = Tracked {
                        container_id: container_id.clone(),
                        device_id: device_id.clone(),
                        authorising_tx: tx.clone(),
                        service_id: s.id,
                        service_name: s.name,
                        mounts: Some(s.mounts),
                        networks: Some(s.networks),
                    };
                    self.journal_op(move |j| j.track(&tracked)).await?;
                }
                let id = action.id;
                self.journal_op(move |j| j.close(id)).await?;
                Ok(done(
                    Resolution::Finished,
                    format!("placement tx {tx} was already recorded running"),
                    None,
                ))
            }
            (Some(_), Some(service)) => {
                action.step = Step::SwarmDone;
                action.service_id = Some(service.id.clone());
                action.service_name = Some(service.name.clone());
                match self
                    .finish_placement(&action, " (completed after a gateway restart)")
                    .await
                {
                    Ok(placed) => Ok(done(
                        Resolution::Finished,
                        format!("service {} runs; recorded running", service.name),
                        Some(placed.outcome_tx),
                    )),
                    Err(OrchestrationError::PlacementFailed {
                        outcome_tx, detail, ..
                    }) => Ok(done(Resolution::RolledBack, detail, Some(outcome_tx))),
                    Err(e) => Err(e),
                }
            }
            (Some(_), None) => {
                let detail = format!("rolled back after a gateway restart: the gateway stopped after PLACE tx {tx} committed and before the service was created; nothing ran");
                let outcome_tx = self
                    .record_outcome(&container_id, "place", &tx, "failed", &detail)
                    .await?;
                let id = action.id;
                self.journal_op(move |j| j.close(id)).await?;
                Ok(done(Resolution::RolledBack, detail, Some(outcome_tx)))
            }
        }
    }

    async fn recover_termination(
        &self,
        mut action: Action,
    ) -> Result<Recovered, OrchestrationError> {
        let container_id = action.kind.container_id().to_owned();
        if action.authorising_tx.is_none() {
            let left = match self.entity(&container_id).await? {
                Some(Entity::Container(c)) if c.state == Lifecycle::Left => c
                    .left
                    .filter(|d| d.stamp.at.seconds >= action.started_at - 1),
                _ => None,
            };
            match left {
                Some(departure) => action.authorising_tx = Some(departure.stamp.tx_id),
                None => {
                    let id = action.id;
                    self.journal_op(move |j| j.close(id)).await?;
                    return Ok(Recovered {
                        action_id: action.id,
                        action: "terminate",
                        container_id,
                        resolution: Resolution::Abandoned,
                        detail: "the leave transaction never committed; the container still runs as recorded".into(),
                        outcome_tx: None,
                    });
                }
            }
        }
        let (resolution, detail, outcome_tx) = match self
            .finish_termination(&action, " (completed after a gateway restart)")
            .await
        {
            Ok(t) => (
                Resolution::Finished,
                format!("removed {:?}", t.removed_services),
                Some(t.outcome_tx),
            ),
            Err(OrchestrationError::RemovalFailed {
                outcome_tx, detail, ..
            }) => (Resolution::Finished, detail, Some(outcome_tx)),
            Err(e) => return Err(e),
        };
        Ok(Recovered {
            action_id: action.id,
            action: "terminate",
            container_id,
            resolution,
            detail,
            outcome_tx,
        })
    }

    /// The services a termination of `container_id` removes: the one TOM placed for it (by
    /// service id, from the journal), never another service that merely copies its labels.
    /// Without a journal entry (a journal lost or older than the placement), the gateway's own
    /// services labelled with the container that run the image the ledger recorded for it.
    async fn container_services(
        &self,
        container_id: &str,
    ) -> Result<Vec<ServiceInfo>, OrchestrationError> {
        let services = self.own_services().await?;
        let cid = container_id.to_owned();
        let tracked: Vec<String> = self
            .journal_op(|j| j.tracked())
            .await?
            .into_iter()
            .filter(|t| t.container_id == cid)
            .map(|t| t.service_id)
            .collect();
        if !tracked.is_empty() {
            return Ok(services
                .into_iter()
                .filter(|s| tracked.contains(&s.id))
                .collect());
        }
        let digest = match self.entity(container_id).await? {
            Some(Entity::Container(c)) => Some(c.digest),
            _ => None,
        };
        Ok(services
            .into_iter()
            .filter(|s| s.container_id() == Some(container_id) && Some(&s.image) == digest.as_ref())
            .collect())
    }

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
                        service.name, service.id, placement.stamp.tx_id, placement.device, fields.join("; ")
                    );
                    let key = format!(
                        "{}:differs:{}",
                        service.id,
                        fields
                            .iter()
                            .map(|f| f.split(':').next().unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join(",")
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
            fields.push(format!(
                "image: runs {}, the ledger authorised {}",
                service.image, container.digest
            ));
        }
        if service.replicas != Some(1) {
            fields.push(format!(
                "replicas: {}, authorised 1",
                service
                    .replicas
                    .map_or_else(|| "global".to_owned(), |r| r.to_string())
            ));
        }
        let constraint = swarm::device_constraint(&placement.device);
        if service.constraints != [constraint.clone()] {
            fields.push(format!(
                "placement constraint: {:?}, authorised [{constraint:?}]",
                service.constraints
            ));
        }
        if let Some(mounts) = own.and_then(|t| t.mounts.as_ref()) {
            let (mut now, mut then) = (service.mounts.clone(), mounts.clone());
            now.sort();
            then.sort();
            if now != then {
                fields.push(format!("mounts: {now:?}, authorised {then:?}"));
            }
        }
        if let Some(networks) = own.and_then(|t| t.networks.as_ref()) {
            if service.networks != *networks {
                fields.push(format!(
                    "network: {:?}, authorised {networks:?}",
                    service.networks
                ));
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
                        Verdict::Differs { fields, .. } => Some(format!("differs from its authorised placement: {}", fields.join("; "))),
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

    async fn record_drift(
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
            .submit(&self.identity, "RecordDrift", &request)
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
    /// The REST API's container-actions seam, backed by this orchestrator.
    pub fn actions(&self) -> Arc<dyn crate::api::actions::ContainerActions> {
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

/// The crash-test failpoint: with `TOM_FAILPOINT_SWARM=<step>` (`authorised`, `created` or
/// `left`) in its environment, a gateway freezes every action at that step forever, so a test
/// can kill the process exactly there. Unset (always, outside those tests), it does nothing.
pub const FAILPOINT_ENV: &str = "TOM_FAILPOINT_SWARM";

fn failpoint_from_env() -> Option<PauseHook> {
    let step = std::env::var(FAILPOINT_ENV)
        .ok()
        .filter(|s| !s.is_empty())?;
    tracing::warn!(%step, "{FAILPOINT_ENV} is set: actions will freeze at this step (crash tests only)");
    Some(Arc::new(move |at: &'static str| {
        let freeze = at == step;
        if freeze {
            tracing::warn!(step = at, "failpoint reached: freezing this action");
        }
        freeze
    }))
}

/// Cut `text` to at most `max` bytes on a character boundary (ledger fields are bounded), with
/// control characters (engine messages carry newlines) turned into spaces, as the contract asks.
fn truncate(text: &str, max: usize) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(super::truncate("abc", 10), "abc");
        assert_eq!(super::truncate("aé", 2), "a");
        assert_eq!(super::truncate("no such\nimage", 100), "no such image");
    }
}
