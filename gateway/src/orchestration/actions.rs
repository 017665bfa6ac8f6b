//! The orchestrator behind the REST API's container-actions seam
//! ([`ContainerActions`], in [`super::port`]): `POST /v1/devices` with a `node_id` binds the
//! node once the identity proof committed, `POST /v1/placements` and `DELETE /v1/containers/{id}`
//! run the full protocols of [`Orchestrator`] as the calling identity.
//!
//! Errors keep their meaning across the seam: a refusal by the contract stays a ledger error
//! (4xx), a failure the orchestrator recorded on the ledger becomes `Orchestrator` (502) with a
//! message that names the recording transaction.

use std::sync::Arc;

use tom_contract::requests::{IdentifyDevice, PlaceContainer, TerminateEntity};

use super::port::{submit_as, ActionError, ActionReport, ContainerActions};
use super::{OrchestrationError, Orchestrator};
use crate::ledger::{Ledger, SigningIdentity};

/// [`ContainerActions`] carried out on Docker Swarm.
pub struct SwarmActions {
    orchestrator: Arc<Orchestrator>,
}

impl SwarmActions {
    pub fn new(orchestrator: Arc<Orchestrator>) -> Self {
        SwarmActions { orchestrator }
    }
}

fn action_error(e: OrchestrationError) -> ActionError {
    match e {
        OrchestrationError::Ledger(e) => ActionError::Ledger(e),
        OrchestrationError::Invalid(message) => ActionError::Rejected(message),
        other => ActionError::Orchestrator(other.to_string()),
    }
}

#[async_trait::async_trait]
impl ContainerActions for SwarmActions {
    async fn identify_device(
        &self,
        ledger: &Arc<dyn Ledger>,
        caller: &SigningIdentity,
        request: &IdentifyDevice,
        node_id: Option<&str>,
    ) -> Result<ActionReport, ActionError> {
        // The node is checked before anything is submitted: a join naming a node that does
        // not exist (or is bound to another device) commits nothing and answers 400. The node
        // id goes on the ledger with the join (the device entity and its IDENTITY record).
        let mut request = request.clone();
        if let Some(node) = node_id {
            self.orchestrator
                .check_bindable(node, &request.device_id)
                .await
                .map_err(action_error)?;
            request.node_id = Some(node.to_owned());
        }
        let request = &request;
        let authorising =
            submit_as::<tom_contract::requests::IdentifyDevice>(ledger, caller, request).await?;
        let Some(node) = node_id else {
            return Ok(ActionReport::ledger_only(authorising));
        };
        match self.orchestrator.bind_node(node, &request.device_id).await {
            Ok(()) => Ok(ActionReport {
                authorising,
                outcome: None,
                detail: Some(format!(
                    "swarm node {node} bound to device {}",
                    request.device_id
                )),
            }),
            Err(e) => Err(ActionError::Orchestrator(format!(
                "device {} joined in tx {}, but swarm node {node} could not be bound to it: {e}",
                request.device_id, authorising.tx_id
            ))),
        }
    }

    async fn place(
        &self,
        _ledger: &Arc<dyn Ledger>,
        caller: &SigningIdentity,
        request: &PlaceContainer,
    ) -> Result<ActionReport, ActionError> {
        let placed = self
            .orchestrator
            .place(caller, &request.container_id, &request.device_id)
            .await
            .map_err(action_error)?;
        let detail = format!(
            "service {} ({}) task {} running on swarm node {}",
            placed.service_name,
            placed.service_id,
            placed.task_id,
            placed.node_id.as_deref().unwrap_or("?")
        );
        Ok(ActionReport {
            authorising: placed.authorising,
            outcome: Some(placed.outcome),
            detail: Some(detail),
        })
    }

    async fn terminate(
        &self,
        _ledger: &Arc<dyn Ledger>,
        caller: &SigningIdentity,
        request: &TerminateEntity,
    ) -> Result<ActionReport, ActionError> {
        let terminated = self
            .orchestrator
            .terminate_container(caller, &request.id, request.reason.as_deref())
            .await
            .map_err(action_error)?;
        let detail = if terminated.removed_services.is_empty() {
            "no service was running".to_owned()
        } else {
            format!("removed service {}", terminated.removed_services.join(", "))
        };
        Ok(ActionReport {
            authorising: terminated.authorising,
            outcome: Some(terminated.outcome),
            detail: Some(detail),
        })
    }

    async fn terminate_device(
        &self,
        ledger: &Arc<dyn Ledger>,
        caller: &SigningIdentity,
        request: &TerminateEntity,
    ) -> Result<ActionReport, ActionError> {
        let authorising =
            submit_as::<tom_contract::requests::TerminateDevice>(ledger, caller, request).await?;
        match self.orchestrator.unbind_device(&request.id).await {
            Ok(nodes) => Ok(ActionReport {
                authorising,
                outcome: None,
                detail: Some(if nodes.is_empty() {
                    "no swarm node was bound to the device".to_owned()
                } else {
                    format!("removed the device label from swarm node {}", nodes.join(", "))
                }),
            }),
            Err(e) => Err(ActionError::Orchestrator(format!(
                "device {} left in tx {}, but its swarm node's label could not be removed (the gateway removes it at its next start): {e}",
                request.id, authorising.tx_id
            ))),
        }
    }

    async fn unauthorised_services(&self) -> Result<serde_json::Value, ActionError> {
        let services = self
            .orchestrator
            .unauthorised_services()
            .await
            .map_err(action_error)?;
        Ok(serde_json::json!({ "services": services }))
    }

    fn describe(&self) -> String {
        format!("docker swarm ({})", self.orchestrator.swarm().describe())
    }
}
