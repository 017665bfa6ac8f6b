//! Recovery: at start, every action a previous run left open is finished or rolled back, and
//! the ledger records which.
//!
//! What it assumes: every step that committed something was journalled before the next began
//! ([`super::journal`]), except the one in flight, whose fate the ledger and the swarm decide.
//! So for each open action it reads the journalled [`Step`] and asks the ledger what committed:
//!
//! | placement journalled at | the ledger says | recovery |
//! |---|---|---|
//! | [`Step::Begun`] | no current placement on the device as recent as the action | abandoned (PLACE never committed) |
//! | any | the placement is no longer current (superseded or recorded failed) | its service, if any, removed; rolled back |
//! | any | recorded running | only the journal was behind: tracked, finished |
//! | authorised or later, service found by its tx label | authorised | steps 3 and 4 of [`super::placement`] run now |
//! | authorised or later, no service | authorised | recorded failed ("nothing ran"); rolled back |
//!
//! A termination journalled at [`Step::Begun`] is abandoned unless the container left no
//! earlier than the action began; otherwise steps 2 and 3 of [`super::termination`] run now.
//! The service is always looked up on the swarm by its authorising-transaction label rather
//! than taken from the journal, since a crash can fall between creating it and journalling it.
//! Transaction times are compared with one second of slack: the action's start is this host's
//! clock and the ledger's stamp may round down.

use serde::Serialize;
use tom_contract::model::{Entity, Lifecycle, PlacementStatus};

use super::placement::AuthorisedPlacement;
use super::{
    Action, ActionKind, OrchestrationError, Orchestrator, Outcome, OutcomeAction, Step, Tracked,
};

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
    pub action: OutcomeAction,
    pub container_id: String,
    pub resolution: Resolution,
    pub detail: String,
    /// The transaction that recorded the resolution, if one was needed.
    pub outcome_tx: Option<String>,
}

impl Orchestrator {
    /// Resolve every action a previous run left open (call once at start, before serving).
    pub async fn recover(&self) -> Result<Vec<Recovered>, OrchestrationError> {
        let mut report = Vec::new();
        for action in self.journal_op(|j| j.open_actions()).await? {
            let Action {
                id,
                kind,
                step,
                started_at,
            } = action;
            let open = OpenAction {
                id,
                started_at,
                step,
            };
            let recovered = match kind {
                ActionKind::Place {
                    container_id,
                    device_id,
                } => {
                    self.recover_placement(open, container_id, device_id)
                        .await?
                }
                ActionKind::Terminate { container_id, .. } => {
                    self.recover_termination(open, container_id).await?
                }
            };
            tracing::info!(action = recovered.action_id, container = %recovered.container_id, resolution = ?recovered.resolution, detail = %recovered.detail, "recovered an open action");
            report.push(recovered);
        }
        Ok(report)
    }

    async fn recover_placement(
        &self,
        action: OpenAction,
        container_id: String,
        device_id: String,
    ) -> Result<Recovered, OrchestrationError> {
        let done = |resolution, detail: String, outcome_tx| Recovered {
            action_id: action.id,
            action: OutcomeAction::Place,
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
        let tx = match action.step.authorising_tx() {
            Some(tx) => tx.to_owned(),
            None => match placement.as_ref().filter(|p| {
                p.device == device_id
                    && p.status == PlacementStatus::Authorised
                    && p.stamp.at.seconds >= action.started_at - 1
            }) {
                Some(p) => p.stamp.tx_id.clone(),
                None => {
                    let id = action.id;
                    self.journal_op(move |j| j.close(id)).await?;
                    return Ok(done(
                        Resolution::Abandoned,
                        "the PLACE transaction never committed; nothing ran".into(),
                        None,
                    ));
                }
            },
        };
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
                let placement = AuthorisedPlacement {
                    action_id: action.id,
                    container_id: container_id.clone(),
                    device_id: device_id.clone(),
                    tx: tx.clone(),
                };
                match self
                    .finish_placement(
                        &placement,
                        &service.id,
                        &service.name,
                        " (completed after a gateway restart)",
                    )
                    .await
                {
                    Ok(running) => Ok(done(
                        Resolution::Finished,
                        format!("service {} runs; recorded running", service.name),
                        Some(running.outcome.tx_id),
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
                    .record_outcome(
                        &container_id,
                        OutcomeAction::Place,
                        &tx,
                        Outcome::Failed,
                        &detail,
                    )
                    .await?;
                let id = action.id;
                self.journal_op(move |j| j.close(id)).await?;
                Ok(done(Resolution::RolledBack, detail, Some(outcome_tx)))
            }
        }
    }

    async fn recover_termination(
        &self,
        action: OpenAction,
        container_id: String,
    ) -> Result<Recovered, OrchestrationError> {
        let tx = match action.step.authorising_tx() {
            Some(tx) => tx.to_owned(),
            None => {
                let left = match self.entity(&container_id).await? {
                    Some(Entity::Container(c)) if c.state == Lifecycle::Left => c
                        .left
                        .filter(|d| d.stamp.at.seconds >= action.started_at - 1),
                    _ => None,
                };
                match left {
                    Some(departure) => departure.stamp.tx_id,
                    None => {
                        let id = action.id;
                        self.journal_op(move |j| j.close(id)).await?;
                        return Ok(Recovered {
                            action_id: action.id,
                            action: OutcomeAction::Terminate,
                            container_id,
                            resolution: Resolution::Abandoned,
                            detail: "the leave transaction never committed; the container still runs as recorded".into(),
                            outcome_tx: None,
                        });
                    }
                }
            }
        };
        let (resolution, detail, outcome_tx) = match self
            .finish_termination(
                action.id,
                &container_id,
                &tx,
                " (completed after a gateway restart)",
            )
            .await
        {
            Ok(removed) => (
                Resolution::Finished,
                format!("removed {:?}", removed.services),
                Some(removed.outcome.tx_id),
            ),
            Err(OrchestrationError::RemovalFailed {
                outcome_tx, detail, ..
            }) => (Resolution::Finished, detail, Some(outcome_tx)),
            Err(e) => return Err(e),
        };
        Ok(Recovered {
            action_id: action.id,
            action: OutcomeAction::Terminate,
            container_id,
            resolution,
            detail,
            outcome_tx,
        })
    }
}

/// What recovery needs of an open action besides its kind.
struct OpenAction {
    id: u64,
    started_at: i64,
    step: Step,
}
