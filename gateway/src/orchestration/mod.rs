//! Orchestration on Docker Swarm as a crash-safe protocol around the ledger.
//!
//! The invariant every protocol here keeps: **no Swarm action happens without its ledger
//! record, and no record is left claiming what did not happen.** So each protocol is a short
//! sequence of steps, and every step that commits something (on the ledger or the swarm) is
//! journalled ([`journal`], fsynced) before the next begins: after a crash, the journal says how
//! far each action got and the ledger says what committed.
//!
//! | protocol | file | steps (journal [`Step`] after each) |
//! |---|---|---|
//! | placement | [`placement`] | `PlaceContainer` ([`Step::Authorised`]) → create the service ([`Step::ServiceCreated`]) → wait for its task → `RecordOutcome` `running`/`failed` (action closed) |
//! | termination | [`termination`] | `TerminateContainer` ([`Step::Authorised`]) → remove the service and wait until its containers are gone → `RecordOutcome` `removed`/`failed` (action closed) |
//! | recovery | [`recovery`] | at start: each open action finished or rolled back from its step, the ledger asked what committed |
//! | reconciliation | [`reconciliation`] | periodic: each service judged against the placement the ledger authorised; drift recorded once (journal's drift marks) |
//! | node watching | [`nodes`] | node events → device unavailable / available (drift) or left (terminations, then `TerminateDevice`) |
//! | start | [`start`] | connect, open the journal, recover, sync node labels, reconcile, then watch and reconcile |
//!
//! [`failpoints`] freezes an action at a named step so crash tests can kill the process exactly
//! there; [`port`] is the seam the REST API calls ([`port::ContainerActions`]) and [`actions`] its
//! Swarm implementation. This file holds the [`Orchestrator`] and what every protocol shares:
//! journal access off the async threads, ledger reads and writes, the outcome vocabulary.
//!
//! This module never decides what is authorised: the contract does. It never holds a lock
//! across an `.await`, and it never imports the REST API module: the API depends on it.

pub mod actions;
pub mod failpoints;
pub mod journal;
pub mod nodes;
pub mod placement;
pub mod port;
pub mod reconciliation;
pub mod recovery;
pub mod start;
pub mod termination;

use crate::clock::{Clock, SystemClock};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tom_contract::model::Entity;
use tom_contract::requests;
use tom_contract::transaction::Transaction as _;

use crate::ledger::{Ledger, LedgerError, SigningIdentity, Submitted};
use crate::swarm::{self, BindMount, ServiceInfo, SwarmDriver, SwarmError};

pub use failpoints::{Failpoint, PauseHook, FAILPOINT_ENV};
pub use journal::{Action, ActionKind, Journal, Step, Tracked};
pub use placement::{Placed, TaskOutcome};
pub use reconciliation::{Drift, DriftUpdate, Reconciliation, UnauthorisedService};
pub use recovery::{Recovered, Resolution};
pub use start::{start, start_for_gateway, Started};
pub use termination::Terminated;

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

/// The protocol a `RecordOutcome` reports on: its `action` field on the ledger, spelt as the
/// contract expects (`place`, `terminate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeAction {
    Place,
    Terminate,
}

impl OutcomeAction {
    /// The ledger's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeAction::Place => "place",
            OutcomeAction::Terminate => "terminate",
        }
    }
}

/// What became of an authorised action: a `RecordOutcome`'s `outcome` field on the ledger, spelt
/// as the contract expects (`running`, `failed`, `removed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A placement's task runs.
    Running,
    /// A placement could not run, or a termination could not remove its service.
    Failed,
    /// A termination removed the service (or found none running).
    Removed,
}

impl Outcome {
    /// The ledger's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Failed => "failed",
            Outcome::Removed => "removed",
        }
    }
}

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
    /// Where "now" comes from (journal start times): the system clock unless a test injects one.
    clock: Arc<dyn Clock>,
    /// Last seen state of each node, for the node watcher to diff against. A std Mutex: only
    /// touched in short synchronous sections.
    nodes: Mutex<BTreeMap<String, swarm::NodeInfo>>,
    node_changes: tokio::sync::broadcast::Sender<nodes::NodeChange>,
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
            clock: Arc::new(SystemClock),
            nodes: Mutex::new(BTreeMap::new()),
            node_changes: tokio::sync::broadcast::channel(64).0,
        }
    }

    /// Take "now" from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Seconds since the epoch, from the injected clock.
    fn unix_now(&self) -> i64 {
        self.clock.now().seconds
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

    /// Step 1 of placement and termination: submit the authorising transaction of the open
    /// action `action_id`. A refusal by the contract (or an MVCC conflict) means nothing
    /// committed, so the action is closed; any other failure leaves it open for recovery, which
    /// asks the ledger whether the transaction committed.
    async fn authorise<T: Serialize>(
        &self,
        action_id: u64,
        identity: &SigningIdentity,
        function: &str,
        request: &T,
    ) -> Result<Submitted, OrchestrationError> {
        let result = self.submit(identity, function, request).await;
        if let Err(OrchestrationError::Ledger(
            LedgerError::Rejected { .. } | LedgerError::Conflict { .. },
        )) = &result
        {
            self.journal_op(move |j| j.close(action_id)).await?;
        }
        result
    }

    /// A device or container as the ledger has it now; `None` if there is no such entity.
    pub async fn entity(&self, id: &str) -> Result<Option<Entity>, OrchestrationError> {
        let request = json(&requests::ById { id: id.to_owned() })?;
        match self
            .ledger
            .evaluate(&self.identity, requests::GetEntity::NAME, &request)
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
        action: OutcomeAction,
        authorising_tx: &str,
        outcome: Outcome,
        detail: &str,
    ) -> Result<String, OrchestrationError> {
        Ok(self
            .record_outcome_submitted(container_id, action, authorising_tx, outcome, detail)
            .await?
            .tx_id)
    }

    /// Submit `RecordOutcome`: what became of the action `authorising_tx` authorised.
    async fn record_outcome_submitted(
        &self,
        container_id: &str,
        action: OutcomeAction,
        authorising_tx: &str,
        outcome: Outcome,
        detail: &str,
    ) -> Result<Submitted, OrchestrationError> {
        let request = requests::RecordOutcome {
            container_id: container_id.to_owned(),
            action: action.as_str().into(),
            authorising_tx: authorising_tx.to_owned(),
            outcome: outcome.as_str().into(),
            detail: truncate(detail, 4000),
        };
        self.submit(&self.identity, requests::RecordOutcome::NAME, &request)
            .await
    }

    /// The TOM services this gateway instance created (others' are none of its business).
    async fn own_services(&self) -> Result<Vec<ServiceInfo>, SwarmError> {
        let mut services = self.swarm.tom_services().await?;
        services.retain(|s| s.gateway() == Some(self.config.instance.as_str()));
        Ok(services)
    }
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
    use super::{Outcome, OutcomeAction};

    #[test]
    fn outcomes_keep_the_ledger_spelling() {
        for (outcome, text) in [
            (Outcome::Running, "running"),
            (Outcome::Failed, "failed"),
            (Outcome::Removed, "removed"),
        ] {
            assert_eq!(outcome.as_str(), text);
            assert_eq!(serde_json::to_value(outcome).unwrap(), text);
        }
        for (action, text) in [
            (OutcomeAction::Place, "place"),
            (OutcomeAction::Terminate, "terminate"),
        ] {
            assert_eq!(action.as_str(), text);
            assert_eq!(serde_json::to_value(action).unwrap(), text);
        }
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(super::truncate("abc", 10), "abc");
        assert_eq!(super::truncate("aé", 2), "a");
        assert_eq!(super::truncate("no such\nimage", 100), "no such image");
    }
}
