//! The placement protocol: PLACE on the ledger, then the service, then its outcome.
//!
//! 1. submit `PlaceContainer`: the contract's guards authorise (or refuse) the placement;
//!    journalled as [`Step::Authorised`] with the transaction id;
//! 2. create the Swarm service: image pinned to the digest the ledger recorded for the
//!    container, one replica, constrained to the device's node, labelled with the container id,
//!    the authorising transaction and this gateway; journalled as [`Step::ServiceCreated`];
//! 3. wait until its task runs or fails ([`TaskOutcome`]);
//! 4. submit `RecordOutcome` (`running`, or `failed` with Docker's own words; a failed service
//!    is removed first, so nothing runs that the ledger does not show), then close the action.
//!
//! Why this order: the ledger must authorise before the swarm acts (no service without its
//! record), and the outcome is recorded only once it is known (no record claiming what did not
//! happen). The crash points between the steps are what recovery resolves
//! ([`super::recovery`]): before step 1 is journalled the ledger is asked whether PLACE
//! committed (the container's current placement, on this device, no older than the action);
//! after step 1 the service is looked up by its authorising-transaction label, so a crash
//! between creating the service and journalling it loses nothing; after step 2 recovery runs
//! steps 3 and 4 itself. A refusal by the contract (or an MVCC conflict) closes the action at
//! once: nothing committed, nothing ran.
//!
//! A re-placement of a running container starts the new service first and removes the old one
//! only once the new one runs, so the container is never without a running placement the
//! ledger knows of.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use tom_contract::model::Entity;
use tom_contract::requests;
use tom_contract::transaction::Transaction as _;

use super::failpoints::Failpoint;
use super::{
    ActionKind, OrchestrationError, Orchestrator, Outcome, OutcomeAction, Step, Tracked, Workload,
};
use crate::ledger::{SigningIdentity, Submitted};
use crate::swarm::{self, BindMount, ServiceRequest, SwarmError, TaskInfo, TaskPhase};

/// How the wait for a placement's task ended (step 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// A task of the service runs.
    Running(TaskInfo),
    /// A task failed or stopped, or none ran before the timeout: the engine's words.
    Failed { reason: String },
}

/// A placement the ledger authorised: what steps 2 to 4 (and recovery) work from. It exists only
/// once the PLACE transaction's id is known, so nothing downstream checks for it again.
pub(super) struct AuthorisedPlacement {
    pub action_id: u64,
    pub container_id: String,
    pub device_id: String,
    /// The PLACE transaction.
    pub tx: String,
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
    /// The PLACE transaction as committed.
    #[serde(skip)]
    pub authorising: Submitted,
    /// The RecordOutcome transaction as committed.
    #[serde(skip)]
    pub outcome: Submitted,
}

/// Steps 3 and 4 done: the task runs and the ledger says so.
pub(super) struct Running {
    pub task: TaskInfo,
    /// The RecordOutcome (`running`) transaction.
    pub outcome: Submitted,
}

impl Orchestrator {
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
        let started = self.unix_now();
        let mut action = self.journal_op(move |j| j.begin(kind, started)).await?;

        // (1) Authorise.
        let request = requests::PlaceContainer {
            container_id: container_id.to_owned(),
            device_id: device_id.to_owned(),
        };
        let authorising = self
            .authorise(
                action.id,
                identity,
                requests::PlaceContainer::NAME,
                &request,
            )
            .await?;
        // (Crash tests: PLACE committed, but the journal does not know its tx id yet.)
        self.checkpoint(Failpoint::Submitted).await;
        let tx = authorising.tx_id.clone();
        action.step = Step::Authorised { tx_id: tx.clone() };
        let journalled = action.clone();
        self.journal_op(move |j| j.update(&journalled)).await?;
        self.checkpoint(Failpoint::Authorised).await;
        let placement = AuthorisedPlacement {
            action_id: action.id,
            container_id: container_id.to_owned(),
            device_id: device_id.to_owned(),
            tx: tx.clone(),
        };

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
                    .fail_placement(&placement, None, &format!("service create: {detail}"))
                    .await)
            }
        };
        action.step = Step::ServiceCreated {
            tx_id: tx,
            service_id: service_id.clone(),
            service_name: service_name.clone(),
        };
        let journalled = action.clone();
        self.journal_op(move |j| j.update(&journalled)).await?;
        self.checkpoint(Failpoint::Created).await;

        // (3) Wait until it runs or fails, then (4) record.
        let Running { task, outcome } = self
            .finish_placement(&placement, &service_id, &service_name, "")
            .await?;
        Ok(Placed {
            container_id: placement.container_id,
            device_id: placement.device_id,
            authorising_tx: placement.tx,
            outcome_tx: outcome.tx_id.clone(),
            service_id,
            service_name,
            task_id: task.id,
            node_id: task.node_id,
            authorising,
            outcome,
        })
    }

    /// Steps 3 and 4 of a placement whose service exists (also used by recovery).
    pub(super) async fn finish_placement(
        &self,
        placement: &AuthorisedPlacement,
        service_id: &str,
        service_name: &str,
        note: &str,
    ) -> Result<Running, OrchestrationError> {
        let AuthorisedPlacement {
            action_id,
            container_id,
            device_id,
            tx,
        } = placement;
        let task = match self.wait_for_task(service_id).await {
            Ok(TaskOutcome::Running(task)) => task,
            Ok(TaskOutcome::Failed { reason }) => {
                return Err(self
                    .fail_placement(placement, Some(service_id), &reason)
                    .await)
            }
            Err(e) => {
                return Err(self
                    .fail_placement(placement, Some(service_id), &e.to_string())
                    .await)
            }
        };
        let node = task.node_id.clone().unwrap_or_else(|| "?".into());
        let detail = format!(
            "service {service_name} ({service_id}) task {} running on swarm node {node}{note}",
            task.id
        );
        let outcome = self
            .record_outcome_submitted(
                container_id,
                OutcomeAction::Place,
                tx,
                Outcome::Running,
                &detail,
            )
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
            service_id: service_id.to_owned(),
            service_name: service_name.to_owned(),
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
        let id = *action_id;
        self.journal_op(move |j| {
            j.track(&tracked)?;
            j.close(id)
        })
        .await?;
        Ok(Running { task, outcome })
    }

    /// Undo an authorised placement that cannot run: remove its service (if any), record the
    /// failure with the engine's words, close the action. Returns the error for the caller.
    pub(super) async fn fail_placement(
        &self,
        placement: &AuthorisedPlacement,
        service_id: Option<&str>,
        detail: &str,
    ) -> OrchestrationError {
        let AuthorisedPlacement {
            action_id,
            container_id,
            device_id,
            tx,
        } = placement;
        let mut detail = detail.to_owned();
        if let Some(service) = service_id {
            if let Err(e) = self.swarm.remove_service(service).await {
                detail.push_str(&format!("; removing the failed service also failed: {e}"));
            }
        }
        match self
            .record_outcome(
                container_id,
                OutcomeAction::Place,
                tx,
                Outcome::Failed,
                &detail,
            )
            .await
        {
            Ok(outcome_tx) => {
                let id = *action_id;
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

    /// Poll the service's tasks until one runs or fails, or [`OrchestratorConfig::run_timeout`]
    /// passes (a failure too). An error means the swarm could not be asked.
    ///
    /// [`OrchestratorConfig::run_timeout`]: super::OrchestratorConfig::run_timeout
    async fn wait_for_task(&self, service_id: &str) -> Result<TaskOutcome, SwarmError> {
        let deadline = Instant::now() + self.config.run_timeout;
        loop {
            let tasks = self.swarm.service_tasks(service_id).await?;
            if let Some(task) = tasks.iter().find(|t| t.phase == TaskPhase::Running) {
                return Ok(TaskOutcome::Running(task.clone()));
            }
            if let Some(task) = tasks
                .iter()
                .find(|t| matches!(t.phase, TaskPhase::Failed | TaskPhase::Stopped))
            {
                let why = task.error.clone().unwrap_or_else(|| task.message.clone());
                return Ok(TaskOutcome::Failed {
                    reason: format!("task {} {}: {why}", task.id, task.state),
                });
            }
            if Instant::now() >= deadline {
                let latest = tasks.first().map_or("no task yet".to_owned(), |t| {
                    format!("task {} {} ({})", t.id, t.state, t.message)
                });
                return Ok(TaskOutcome::Failed {
                    reason: format!(
                        "no task was running after {} s; latest: {latest}",
                        self.config.run_timeout.as_secs()
                    ),
                });
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }
}
