//! The port between the REST API and the container orchestrator.
//!
//! Four API actions touch the orchestrator as well as the ledger: identifying a device (which
//! may name the Swarm node it is), placing a container, terminating one, and a device leaving.
//! The handlers call them through [`ContainerActions`], held once in the app state. The default
//! implementation, [`LedgerOnly`], submits the single authorising transaction and nothing else;
//! [`super::actions::SwarmActions`] runs the full protocols (PLACE tx, create the service, wait,
//! RecordOutcome) and reports the outcome transaction too. The handlers do not know which one
//! they talk to.
//!
//! The port lives on the orchestration side so the dependency points one way: `api` calls
//! orchestration through it (re-exported as `api::actions`) and orchestration never imports
//! `api`.
//!
//! An implementation must never leave a half-done action unrecorded: if the ledger refuses the
//! authorising transaction nothing may be started, and an orchestrator failure after it
//! committed must be reported to the ledger (RecordOutcome `failed`) before returning.

use std::sync::Arc;

use tom_contract::requests::{IdentifyDevice, PlaceContainer, TerminateEntity};

use crate::ledger::{Ledger, LedgerError, SigningIdentity, Submitted};

/// What an action committed: the authorising transaction and, when an orchestrator carried it
/// out, the transaction that reports the outcome.
#[derive(Debug, Clone)]
pub struct ActionReport {
    pub authorising: Submitted,
    pub outcome: Option<Submitted>,
    /// What the orchestrator did (e.g. the Swarm service id), for the response.
    pub detail: Option<String>,
}

impl ActionReport {
    pub fn ledger_only(authorising: Submitted) -> Self {
        ActionReport {
            authorising,
            outcome: None,
            detail: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The request cannot be carried out by this implementation (answered 400).
    #[error("{0}")]
    Rejected(String),
    /// The orchestrator failed; the message says what the ledger now records (answered 502).
    #[error("{0}")]
    Orchestrator(String),
}

/// Submit `T`'s transaction with `request` as its argument: the authorising step every action
/// starts with.
pub(super) async fn submit_as<T: tom_contract::transaction::Transaction>(
    ledger: &Arc<dyn Ledger>,
    caller: &SigningIdentity,
    request: &impl serde::Serialize,
) -> Result<Submitted, ActionError> {
    Ok(ledger.submit(caller, T::NAME, &json(request)?).await?)
}

/// The one step [`LedgerOnly`] (and the default `terminate_device`) takes: the authorising
/// transaction, reported.
async fn record_only<T: tom_contract::transaction::Transaction>(
    ledger: &Arc<dyn Ledger>,
    caller: &SigningIdentity,
    request: &impl serde::Serialize,
) -> Result<ActionReport, ActionError> {
    Ok(ActionReport::ledger_only(
        submit_as::<T>(ledger, caller, request).await?,
    ))
}

fn json(value: &impl serde::Serialize) -> Result<Vec<u8>, ActionError> {
    serde_json::to_vec(value).map_err(|e| {
        ActionError::Ledger(LedgerError::Internal(format!("cannot encode request: {e}")))
    })
}

/// The orchestrator side of the API's device and container actions.
#[async_trait::async_trait]
pub trait ContainerActions: Send + Sync + 'static {
    /// `POST /v1/devices`: one `IdentifyDevice` transaction; `node_id` is the orchestrator's
    /// name for the device (e.g. a Swarm node id), if the caller gave one.
    async fn identify_device(
        &self,
        ledger: &Arc<dyn Ledger>,
        caller: &SigningIdentity,
        request: &IdentifyDevice,
        node_id: Option<&str>,
    ) -> Result<ActionReport, ActionError>;

    /// `POST /v1/placements`: a `PlaceContainer` transaction, then (if there is an orchestrator)
    /// the placement itself and its outcome.
    async fn place(
        &self,
        ledger: &Arc<dyn Ledger>,
        caller: &SigningIdentity,
        request: &PlaceContainer,
    ) -> Result<ActionReport, ActionError>;

    /// `DELETE /v1/containers/{id}`: a `TerminateContainer` transaction, then (if there is an
    /// orchestrator) the removal and its outcome.
    async fn terminate(
        &self,
        ledger: &Arc<dyn Ledger>,
        caller: &SigningIdentity,
        request: &TerminateEntity,
    ) -> Result<ActionReport, ActionError>;

    /// `DELETE /v1/devices/{id}`: a `TerminateDevice` transaction, then (if there is an
    /// orchestrator) the device's node binding is removed.
    async fn terminate_device(
        &self,
        ledger: &Arc<dyn Ledger>,
        caller: &SigningIdentity,
        request: &TerminateEntity,
    ) -> Result<ActionReport, ActionError> {
        record_only::<tom_contract::requests::TerminateDevice>(ledger, caller, request).await
    }

    /// `GET /v1/swarm/unauthorised`: every service on the orchestrator that no TOM gateway
    /// authorised.
    async fn unauthorised_services(&self) -> Result<serde_json::Value, ActionError> {
        Err(ActionError::Rejected(
            "this gateway has no container orchestrator (start it with --swarm)".into(),
        ))
    }

    /// For `/healthz` and logs.
    fn describe(&self) -> String;
}

/// Records the authorising transactions only: for a gateway without a container orchestrator
/// (tests, or an orchestrator that calls the API after acting itself).
#[derive(Debug, Default, Clone, Copy)]
pub struct LedgerOnly;

#[async_trait::async_trait]
impl ContainerActions for LedgerOnly {
    async fn identify_device(
        &self,
        ledger: &Arc<dyn Ledger>,
        caller: &SigningIdentity,
        request: &IdentifyDevice,
        node_id: Option<&str>,
    ) -> Result<ActionReport, ActionError> {
        if let Some(node) = node_id {
            // Dropping it silently would let a caller believe the node is now bound to the device.
            return Err(ActionError::Rejected(format!("node_id {node:?} given, but this gateway has no container orchestrator to bind it to; omit node_id")));
        }
        record_only::<tom_contract::requests::IdentifyDevice>(ledger, caller, request).await
    }

    async fn place(
        &self,
        ledger: &Arc<dyn Ledger>,
        caller: &SigningIdentity,
        request: &PlaceContainer,
    ) -> Result<ActionReport, ActionError> {
        record_only::<tom_contract::requests::PlaceContainer>(ledger, caller, request).await
    }

    async fn terminate(
        &self,
        ledger: &Arc<dyn Ledger>,
        caller: &SigningIdentity,
        request: &TerminateEntity,
    ) -> Result<ActionReport, ActionError> {
        record_only::<tom_contract::requests::TerminateContainer>(ledger, caller, request).await
    }

    fn describe(&self) -> String {
        "none (ledger records only)".into()
    }
}
