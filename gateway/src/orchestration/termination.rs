//! The termination protocol: the container leaves the ledger, then its service goes, then the
//! outcome is recorded.
//!
//! 1. submit `TerminateContainer` (the paper's PROV-ID-delete): the contract refuses it unless
//!    the container has joined; journalled as [`Step::Authorised`] with the transaction id;
//! 2. remove the container's service and wait until the engine has no container of it left
//!    (the remove call returns before they have stopped;
//!    [`OrchestratorConfig::removal_timeout`] bounds the wait);
//! 3. submit `RecordOutcome` (`removed`, or `failed` naming the service whose containers
//!    remain), then forget the tracked placement and close the action.
//!
//! Why the leave comes first: once it commits the container may run nothing, so whatever
//! happens next the swarm is brought to what the ledger says, never the ledger to what the
//! swarm does. A crash before the leave is journalled is resolved by asking the ledger whether
//! the container left (and no earlier than the action began); after it, recovery runs steps 2
//! and 3 itself ([`super::recovery`]). Removal is idempotent, so repeating step 2 is harmless.
//! Only the service TOM placed for the container is removed (by id, from the journal), never
//! another that merely copies its labels.
//!
//! [`OrchestratorConfig::removal_timeout`]: super::OrchestratorConfig::removal_timeout

use serde::Serialize;
use tom_contract::model::Entity;
use tom_contract::requests;
use tom_contract::transaction::Transaction as _;

use super::failpoints::Failpoint;
use super::{ActionKind, OrchestrationError, Orchestrator, Outcome, OutcomeAction, Step};
use crate::ledger::{SigningIdentity, Submitted};
use crate::swarm::ServiceInfo;

/// A completed termination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Terminated {
    pub container_id: String,
    pub leave_tx: String,
    pub outcome_tx: String,
    /// Names of the services removed (empty if none was running).
    pub removed_services: Vec<String>,
    /// The leave transaction as committed.
    #[serde(skip)]
    pub authorising: Submitted,
    /// The RecordOutcome transaction as committed.
    #[serde(skip)]
    pub outcome: Submitted,
}

/// Steps 2 and 3 done: the service is gone and the ledger says so.
pub(super) struct Removed {
    /// Names of the services removed (empty if none was running).
    pub services: Vec<String>,
    /// The RecordOutcome (`removed`) transaction.
    pub outcome: Submitted,
}

impl Orchestrator {
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
        let started = self.unix_now();
        let mut action = self.journal_op(move |j| j.begin(kind, started)).await?;
        let request = requests::TerminateEntity {
            id: container_id.to_owned(),
            reason: reason.map(str::to_owned),
        };
        let authorising = self
            .authorise(
                action.id,
                identity,
                requests::TerminateContainer::NAME,
                &request,
            )
            .await?;
        action.step = Step::Authorised {
            tx_id: authorising.tx_id.clone(),
        };
        let journalled = action.clone();
        self.journal_op(move |j| j.update(&journalled)).await?;
        self.checkpoint(Failpoint::Left).await;
        let Removed {
            services: removed_services,
            outcome,
        } = self
            .finish_termination(action.id, container_id, &authorising.tx_id, "")
            .await?;
        Ok(Terminated {
            container_id: container_id.to_owned(),
            leave_tx: authorising.tx_id.clone(),
            outcome_tx: outcome.tx_id.clone(),
            removed_services,
            authorising,
            outcome,
        })
    }

    /// Steps 2 and 3 of a termination whose leave transaction `tx` committed (also used by
    /// recovery).
    pub(super) async fn finish_termination(
        &self,
        action_id: u64,
        container_id: &str,
        tx: &str,
        note: &str,
    ) -> Result<Removed, OrchestrationError> {
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
            None if removed.is_empty() => {
                (Outcome::Removed, format!("no service was running{note}"))
            }
            None => (
                Outcome::Removed,
                format!("removed service {}{note}", removed.join(", ")),
            ),
            Some(why) => (Outcome::Failed, format!("{why}{note}")),
        };
        let outcome = self
            .record_outcome_submitted(container_id, OutcomeAction::Terminate, tx, outcome, &detail)
            .await?;
        let id = action_id;
        let container = container_id.to_owned();
        self.journal_op(move |j| {
            j.untrack(&container)?;
            j.close(id)
        })
        .await?;
        match failure {
            None => Ok(Removed {
                services: removed,
                outcome,
            }),
            Some(detail) => Err(OrchestrationError::RemovalFailed {
                container_id: container_id.to_owned(),
                leave_tx: tx.to_owned(),
                outcome_tx: outcome.tx_id,
                detail,
            }),
        }
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
}
