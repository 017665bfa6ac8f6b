//! Placement: the orchestrator's PLACE decision, ORCHESTRATE(deployed, location), and its
//! reports of how a placement or removal went and of what drifted from what the ledger authorised.

use super::{check_id, check_text, MAX_TEXT_LEN};
use crate::context::Ctx;
use crate::error::ContractError;
use crate::guards::{self, GuardFailure, Guards};
use crate::keys;
use crate::model::*;
use crate::requests;
use crate::transaction::{Callers, Kind, Transaction};

// --- placement --------------------------------------------------------------------------------

impl Transaction for requests::PlaceContainer {
    const NAME: &'static str = "PlaceContainer";
    const KIND: Kind = Kind::Submit;
    const RECORD: Option<RecordKind> = Some(RecordKind::Orchestrate);
    const CALLERS: Callers = Callers::Members(&[Role::Orchestrator]);
    const DESCRIPTION: &'static str =
        "ORCHESTRATE(deployed, location): place or re-place a container on a device";
    type Response = LedgerRecord;

    fn execute(self, ctx: &mut Ctx) -> Result<LedgerRecord, ContractError> {
        let req = self;
        let f = ctx.function;
        let caller = ctx.authorise::<Self>()?;
        check_id(f, "container_id", &req.container_id)?;
        check_id(f, "device_id", &req.device_id)?;
        let container = ctx.entity(&req.container_id)?;
        let device = ctx.entity(&req.device_id)?;
        if let Some(Entity::Container(c)) = &container {
            ctx.acts_for(&caller, &c.org, "place containers")?;
            if let Some(Entity::Device(d)) = &device {
                if !ctx.consents(&d.org, &c.org, |p| &p.hosts_containers_of)? {
                    return Err(ContractError::denied(
                    f,
                    format!(
                        "device {} of {} does not host containers of {}: {}'s policy does not name {} in hosts_containers_of",
                        d.id, d.org, c.org, d.org, c.org
                    ),
                ));
                }
            }
        }
        let mut guards = Guards::new();
        guards.check(guards::joined(
            &req.container_id,
            EntityType::Container,
            container.as_ref(),
        ));
        guards.check(guards::joined(
            &req.device_id,
            EntityType::Device,
            device.as_ref(),
        ));
        if let Some(Entity::Container(c)) = &container {
            guards.check(guards::not_placed_on(c, &req.device_id));
        }
        guards.finish("place container")?;
        let Some(Entity::Container(mut container)) = container else {
            return Err(ContractError::NotFound {
                kind: "container",
                id: req.container_id,
            });
        };
        let previous = container.placement.take().map(|p| p.device);
        if let Some(old) = &previous {
            ctx.delete_index(keys::PLACED_ON, &[old, &req.container_id])?;
        }
        ctx.put_index(keys::PLACED_ON, &[&req.device_id, &req.container_id])?;
        container.placement = Some(Placement {
            device: req.device_id.clone(),
            stamp: ctx.stamp(&caller),
            status: PlacementStatus::Authorised,
            previous_device: previous.clone(),
        });
        ctx.put_entity(&Entity::Container(container))?;
        let mut subjects = vec![req.container_id.clone(), req.device_id.clone()];
        subjects.extend(previous.clone());
        let body = RecordBody::Place {
            deployed: req.container_id,
            location: req.device_id,
            previous_location: previous,
        };
        ctx.record(&caller, RecordKind::Orchestrate, subjects, body)
    }
}

/// The orchestrator reports how an authorised placement or removal went. A failed placement
/// removes the placement, so the ledger never claims a container runs where it does not.
impl Transaction for requests::RecordOutcome {
    const NAME: &'static str = "RecordOutcome";
    const KIND: Kind = Kind::Submit;
    const RECORD: Option<RecordKind> = Some(RecordKind::Outcome);
    const CALLERS: Callers = Callers::Members(&[Role::Orchestrator]);
    const DESCRIPTION: &'static str =
        "report whether an authorised placement runs or failed, or a removal completed";
    type Response = LedgerRecord;

    fn execute(self, ctx: &mut Ctx) -> Result<LedgerRecord, ContractError> {
        let req = self;
        let f = ctx.function;
        let caller = ctx.authorise::<Self>()?;
        check_id(f, "container_id", &req.container_id)?;
        check_text(f, "authorising_tx", &req.authorising_tx)?;
        if req.detail.len() > 4 * MAX_TEXT_LEN {
            return Err(ContractError::bad(
                f,
                format!("detail must be at most {} characters", 4 * MAX_TEXT_LEN),
            ));
        }
        let Some(Entity::Container(mut container)) = ctx.entity(&req.container_id)? else {
            return Err(ContractError::NotFound {
                kind: "container",
                id: req.container_id,
            });
        };
        ctx.acts_for(&caller, &container.org, "report outcomes for containers")?;
        let mut subjects = vec![container.id.clone()];
        match (req.action.as_str(), req.outcome.as_str()) {
            ("place", outcome @ ("running" | "failed")) => {
                let placement = guards::require(
                    "record placement outcome",
                    guards::current_placement(&container, Some(&req.authorising_tx)),
                )?
                .clone();
                if placement.status == PlacementStatus::Running {
                    return Err(ContractError::GuardFailed {
                        transition: "record placement outcome",
                        failures: vec![GuardFailure::Precondition {
                            condition: "authorised(placement)",
                            detail: format!(
                                "placement tx {} was reported running already",
                                req.authorising_tx
                            ),
                        }],
                    });
                }
                subjects.push(placement.device.clone());
                if outcome == "running" {
                    container.placement = Some(Placement {
                        status: PlacementStatus::Running,
                        ..placement
                    });
                } else {
                    ctx.delete_index(keys::PLACED_ON, &[&placement.device, &container.id])?;
                    container.last_failed_placement = Some(FailedPlacement {
                        device: placement.device.clone(),
                        placement_tx: req.authorising_tx.clone(),
                        reported: ctx.stamp(&caller),
                        detail: req.detail.clone(),
                    });
                    container.placement = None;
                }
            }
            ("terminate", "removed" | "failed") => {
                let left_tx = container.left.as_ref().map(|d| d.stamp.tx_id.clone());
                if left_tx.as_deref() != Some(req.authorising_tx.as_str()) {
                    return Err(ContractError::GuardFailed {
                        transition: "record removal outcome",
                        failures: vec![GuardFailure::Precondition {
                            condition: "left(container, tx)",
                            detail: format!(
                                "container {} did not leave in tx {} (state: {})",
                                container.id,
                                req.authorising_tx,
                                Entity::Container(container.clone()).state_description()
                            ),
                        }],
                    });
                }
            }
            (action, outcome) => {
                return Err(ContractError::bad(f, format!("action {action:?} with outcome {outcome:?}: expected place running|failed or terminate removed|failed")));
            }
        }
        ctx.put_entity(&Entity::Container(container))?;
        let body = RecordBody::Outcome {
            container: req.container_id,
            action: req.action,
            authorising_tx: req.authorising_tx,
            outcome: req.outcome,
            detail: req.detail,
        };
        ctx.record(&caller, RecordKind::Outcome, subjects, body)
    }
}

/// The orchestrator records what it observed that differs from the ledger. Optionally the
/// observation updates the container's placement status (so the entity alone does not claim a
/// container runs that does not) and/or a device's availability (a maintenance window or a node
/// that stopped answering: the device has not left).
impl Transaction for requests::RecordDrift {
    const NAME: &'static str = "RecordDrift";
    const KIND: Kind = Kind::Submit;
    const RECORD: Option<RecordKind> = Some(RecordKind::Drift);
    const CALLERS: Callers = Callers::Members(&[Role::Orchestrator]);
    const DESCRIPTION: &'static str =
        "record orchestrator state that differs from what the ledger authorised";
    type Response = LedgerRecord;

    fn execute(self, ctx: &mut Ctx) -> Result<LedgerRecord, ContractError> {
        let req = self;
        let f = ctx.function;
        let caller = ctx.authorise::<Self>()?;
        check_text(f, "service", &req.service)?;
        check_text(f, "description", &req.description)?;
        if let Some(tx) = &req.authorising_tx {
            check_text(f, "authorising_tx", tx)?;
        }
        if req.placement_status.is_some() && req.container_id.is_none() {
            return Err(ContractError::bad(f, "placement_status needs container_id"));
        }
        if req.placement_status == Some(PlacementStatus::Authorised) {
            return Err(ContractError::bad(
                f,
                "placement_status authorised is set only by PlaceContainer",
            ));
        }
        if req.device_id.is_some() != req.device_status.is_some() {
            return Err(ContractError::bad(
                f,
                "device_id and device_status go together",
            ));
        }
        let mut subjects = Vec::new();
        let mut container_update = None;
        let mut guards = Guards::new();
        if let Some(id) = &req.container_id {
            check_id(f, "container_id", id)?;
            let entity = ctx.entity(id)?;
            if let Some(entity) = &entity {
                ctx.acts_for(&caller, entity.org(), "report drift of entities")?;
            }
            subjects.push(id.clone());
            if let Some(status) = req.placement_status {
                guards.check(guards::joined(id, EntityType::Container, entity.as_ref()));
                if let Some(Entity::Container(mut c)) = entity {
                    let current = guards::current_placement(&c, req.authorising_tx.as_deref());
                    if let Some(p) = guards.hold(current).cloned() {
                        if p.status == PlacementStatus::Authorised {
                            guards.check(Err(GuardFailure::Precondition {
                                condition: "reported(placement)",
                                detail: format!("placement tx {} of container {} has no outcome yet; RecordOutcome reports it first", p.stamp.tx_id, c.id),
                            }));
                        }
                        subjects.push(p.device.clone());
                        c.placement = Some(Placement { status, ..p });
                        container_update = Some(c);
                    }
                }
            }
        }
        let mut device_update = None;
        if let (Some(id), Some(status)) = (&req.device_id, req.device_status) {
            check_id(f, "device_id", id)?;
            let entity = ctx.entity(id)?;
            if let Some(Entity::Device(d)) = &entity {
                ctx.acts_for(&caller, &d.org, "report device availability")?;
            }
            guards.check(guards::joined(id, EntityType::Device, entity.as_ref()));
            if let Some(Entity::Device(mut d)) = entity {
                d.availability = Some(DeviceAvailability {
                    status,
                    reason: req.description.clone(),
                    reported: ctx.stamp(&caller),
                });
                device_update = Some(d);
            }
            if !subjects.contains(id) {
                subjects.push(id.clone());
            }
        }
        guards.finish("record drift")?;
        if let Some(c) = container_update {
            ctx.put_entity(&Entity::Container(c))?;
        }
        if let Some(d) = device_update {
            ctx.put_entity(&Entity::Device(d))?;
        }
        let body = RecordBody::Drift {
            service: req.service,
            container: req.container_id,
            description: req.description,
            action_taken: req.action_taken,
            placement_status: req.placement_status,
            device: req.device_id,
            device_status: req.device_status,
        };
        ctx.record(&caller, RecordKind::Drift, subjects, body)
    }
}
