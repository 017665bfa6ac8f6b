//! The guards of the paper's state machine (Table II) as values.
//!
//! A guard either holds or yields a [`GuardFailure`] that says which entity, which state it is in
//! and which condition failed. A transition evaluates all of its guards with [`Guards`] and is
//! refused with every failure listed, so the caller learns everything wrong at once. Each guard
//! is a named function here, so a transaction reads like the table's row:
//!
//! | transition        | guard                                   |
//! |-------------------|-----------------------------------------|
//! | join device/container | [`may_join`] (not joined already)   |
//! | leave device      | [`joined`]\(device), [`no_containers_placed`] |
//! | leave container   | [`joined`]\(container)                  |
//! | leave data        | [`joined`]\(generator), [`placed`]\(container generator), [`left`]\(each input) |
//! | join data (EXEC)  | [`left`]\(data), [`joined`] + [`placed`]\(activity), [`active`]\(contract), [`credential`], [`not_used`] |
//! | place container   | [`joined`]\(container), [`joined`]\(device), [`not_placed_on`] |
//! | outcome of a placement | [`current_placement`], [`authorised`] |
//! | outcome of a removal | [`left_in`]                          |
//! | drift of a placement | [`current_placement`], [`reported`]  |
//! | leave data from a container | [`signing_identity`]          |
//! | settle contract   | [`deadline_passed`]                      |

use std::fmt;

use serde::Serialize;

use crate::ledger::Timestamp;
use crate::model::{
    CertificateInfo, Container, ContractState, Credential, Data, Entity, EntityType, Lifecycle,
    Placement, PlacementStatus, ProcessingContract,
};

/// One failed guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "guard", rename_all = "snake_case")]
pub enum GuardFailure {
    /// joined(x) does not hold.
    NotJoined {
        entity_type: EntityType,
        id: String,
        state: String,
    },
    /// The entity is joined already; a second join would hide the first.
    AlreadyJoined {
        entity_type: EntityType,
        id: String,
        since_tx: String,
    },
    /// left(data) does not hold: no PROV-DATA record exists for it.
    DataNotLeft { id: String },
    /// The id is taken by an entity of another type (ids are one namespace).
    IdTaken { id: String, holder: String },
    /// The id names an entity of another type.
    WrongType {
        id: String,
        expected: EntityType,
        actual: EntityType,
    },
    /// A device cannot leave while containers are placed on it.
    ContainersPlaced {
        device: String,
        containers: Vec<String>,
    },
    /// The container has no placement on a device.
    NotPlaced { container: String },
    /// The container is on that device already.
    AlreadyPlaced {
        container: String,
        device: String,
        since_tx: String,
    },
    /// The contract is not active.
    ContractNotActive { contract: String, state: String },
    /// The activity holds no credential for this input.
    NoCredential {
        activity: String,
        contract: String,
        data: String,
        kind: String,
        source: String,
    },
    /// The data has joined this activity under this contract already.
    AlreadyUsed {
        data: String,
        contract: String,
        tx_id: String,
    },
    /// A free-form precondition named by the transition.
    Precondition {
        condition: &'static str,
        detail: String,
    },
}

impl fmt::Display for GuardFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardFailure::NotJoined { entity_type, id, state } => {
                write!(f, "guard joined({entity_type}) failed: {entity_type} {id} is {state}")
            }
            GuardFailure::AlreadyJoined { entity_type, id, since_tx } => {
                write!(f, "guard not joined({entity_type}) failed: {entity_type} {id} is joined (since tx {since_tx})")
            }
            GuardFailure::DataNotLeft { id } => {
                write!(f, "guard left(data) failed: data {id} has no PROV-DATA record (state: never left a sensor or activity)")
            }
            GuardFailure::IdTaken { id, holder } => {
                write!(f, "entity {id} already exists ({holder})")
            }
            GuardFailure::WrongType { id, expected, actual } => {
                write!(f, "{id} is a {actual}, not a {expected}")
            }
            GuardFailure::ContainersPlaced { device, containers } => write!(
                f,
                "guard no-containers-placed failed: device {device} still hosts container(s) {}",
                containers.join(", ")
            ),
            GuardFailure::NotPlaced { container } => {
                write!(f, "guard placed(container) failed: container {container} is joined but not placed on any device")
            }
            GuardFailure::AlreadyPlaced { container, device, since_tx } => {
                write!(f, "container {container} is placed on device {device} already (since tx {since_tx})")
            }
            GuardFailure::ContractNotActive { contract, state } => {
                write!(f, "guard active(contract) failed: contract {contract} is {state}")
            }
            GuardFailure::NoCredential { activity, contract, data, kind, source } => write!(
                f,
                "guard credential(activity, data) failed: contract {contract} grants activity {activity} no use of data {data} (kind {kind}, source {source})"
            ),
            GuardFailure::AlreadyUsed { data, contract, tx_id } => {
                write!(f, "data {data} has joined its activity under contract {contract} already (tx {tx_id})")
            }
            GuardFailure::Precondition { condition, detail } => write!(f, "guard {condition} failed: {detail}"),
        }
    }
}

/// Collects the failures of several guards for one transition.
#[derive(Debug, Default)]
pub struct Guards {
    failures: Vec<GuardFailure>,
}

impl Guards {
    pub fn new() -> Self {
        Self::default()
    }

    /// Evaluate one guard.
    pub fn check(&mut self, outcome: Result<(), GuardFailure>) -> &mut Self {
        if let Err(failure) = outcome {
            self.failures.push(failure);
        }
        self
    }

    /// Evaluate one guard that yields what the transition goes on with: the value when it
    /// held, `None` (and the failure recorded) when it did not.
    pub fn hold<T>(&mut self, outcome: Result<T, GuardFailure>) -> Option<T> {
        match outcome {
            Ok(value) => Some(value),
            Err(failure) => {
                self.failures.push(failure);
                None
            }
        }
    }

    /// `Ok` when every guard held, otherwise the refusal listing each failure.
    pub fn finish(&mut self, transition: &'static str) -> Result<(), crate::ContractError> {
        if self.failures.is_empty() {
            Ok(())
        } else {
            Err(crate::ContractError::GuardFailed {
                transition,
                failures: std::mem::take(&mut self.failures),
            })
        }
    }
}

/// joined(entity): the entity exists, is of the expected type and has not left.
pub fn joined(id: &str, expected: EntityType, entity: Option<&Entity>) -> Result<(), GuardFailure> {
    let Some(entity) = entity else {
        return Err(GuardFailure::NotJoined {
            entity_type: expected,
            id: id.to_owned(),
            state: "unknown (never joined)".into(),
        });
    };
    if entity.entity_type() != expected {
        return Err(GuardFailure::WrongType {
            id: id.to_owned(),
            expected,
            actual: entity.entity_type(),
        });
    }
    match entity.lifecycle() {
        Some(Lifecycle::Joined) => Ok(()),
        _ => Err(GuardFailure::NotJoined {
            entity_type: expected,
            id: id.to_owned(),
            state: entity.state_description(),
        }),
    }
}

/// left(data): a PROV-DATA record exists for the data.
pub fn left(id: &str, entity: Option<&Entity>) -> Result<(), GuardFailure> {
    match entity {
        Some(Entity::Data(_)) => Ok(()),
        Some(other) => Err(GuardFailure::WrongType {
            id: id.to_owned(),
            expected: EntityType::Data,
            actual: other.entity_type(),
        }),
        None => Err(GuardFailure::DataNotLeft { id: id.to_owned() }),
    }
}

/// not joined(entity): the id is free, or names an entity of the same type and organisation that
/// has left (a rejoin). Ids are one namespace, so an entity of another type holds it for good.
pub fn may_join(
    id: &str,
    expected: EntityType,
    org: &str,
    previous: Option<&Entity>,
) -> Result<(), GuardFailure> {
    let Some(previous) = previous else {
        return Ok(());
    };
    if previous.entity_type() != expected {
        return Err(GuardFailure::IdTaken {
            id: id.to_owned(),
            holder: match previous {
                // "data that left …" already names the type: never "a data that is data …".
                Entity::Data(d) => format!(
                    "data recorded (left its generator) at tx {} ({})",
                    d.recorded.tx_id, d.recorded.at
                ),
                _ => format!(
                    "a {} that is {}",
                    previous.entity_type(),
                    previous.state_description()
                ),
            },
        });
    }
    let (previous_org, joined_tx) = match previous {
        Entity::Device(d) => (&d.org, &d.joined.tx_id),
        Entity::Container(c) => (&c.org, &c.joined.tx_id),
        Entity::Data(d) => (&d.recorded.by.msp_id, &d.recorded.tx_id),
    };
    match previous.lifecycle() {
        Some(Lifecycle::Left) if previous_org == org => Ok(()),
        Some(Lifecycle::Left) => Err(GuardFailure::Precondition {
            condition: "same-org(rejoin)",
            detail: format!("{expected} {id} belonged to {previous_org}, not {org}"),
        }),
        _ => Err(GuardFailure::AlreadyJoined {
            entity_type: expected,
            id: id.to_owned(),
            since_tx: joined_tx.clone(),
        }),
    }
}

/// A transition with one guard whose value it needs: the value, or the refusal.
pub fn require<T>(
    transition: &'static str,
    outcome: Result<T, GuardFailure>,
) -> Result<T, crate::ContractError> {
    outcome.map_err(|failure| crate::ContractError::GuardFailed {
        transition,
        failures: vec![failure],
    })
}

/// no-containers-placed(device): Table II, leave device ("IF joined(device)"), extended: a
/// device leaves only once no container is placed on it. `placed` lists those that are.
pub fn no_containers_placed(device: &str, placed: Vec<String>) -> Result<(), GuardFailure> {
    if placed.is_empty() {
        Ok(())
    } else {
        Err(GuardFailure::ContainersPlaced {
            device: device.to_owned(),
            containers: placed,
        })
    }
}

/// placed(container): Table II, leave data and join data (at activity), extended: a container
/// activity generates and uses data only where it runs. Yields the device it is placed on.
pub fn placed(container: &Container) -> Result<&str, GuardFailure> {
    container
        .placement
        .as_ref()
        .map(|p| p.device.as_str())
        .ok_or_else(|| GuardFailure::NotPlaced {
            container: container.id.clone(),
        })
}

/// not placed-on(container, device): ORCHESTRATE(deployed, location) places a container where it
/// is not running already. Re-placing on the same device is refused while that placement is
/// active; once drift reported it missing, stopped, unavailable or drifted, a fresh placement
/// may replace it.
pub fn not_placed_on(container: &Container, device: &str) -> Result<(), GuardFailure> {
    match container
        .placement
        .as_ref()
        .filter(|p| p.device == device && p.status.is_active())
    {
        Some(p) => Err(GuardFailure::AlreadyPlaced {
            container: container.id.clone(),
            device: p.device.clone(),
            since_tx: p.stamp.tx_id.clone(),
        }),
        None => Ok(()),
    }
}

/// current-placement(container, tx): a report on a placement (an outcome, or drift) is about
/// the container's current one, made by PLACE transaction `tx` (any, when `None`). Yields it.
pub fn current_placement<'c>(
    container: &'c Container,
    tx: Option<&str>,
) -> Result<&'c Placement, GuardFailure> {
    match &container.placement {
        Some(p) if tx.is_none_or(|tx| tx == p.stamp.tx_id) => Ok(p),
        current => Err(GuardFailure::Precondition {
            condition: "current-placement(container, tx)",
            detail: format!(
                "placement tx {} is not container {}'s current placement (current: {})",
                tx.unwrap_or("(any)"),
                container.id,
                current.as_ref().map_or("none".to_owned(), |p| format!(
                    "tx {} on {}",
                    p.stamp.tx_id, p.device
                ))
            ),
        }),
    }
}

/// active(contract): Table II, join data (at activity), extended: data joins an activity only
/// under a contract that is active at the transaction time (not fulfilled, not violated, its
/// deadline not passed).
pub fn active(contract: &ProcessingContract, now: Timestamp) -> Result<(), GuardFailure> {
    if contract.state_at(now) == ContractState::Active {
        Ok(())
    } else {
        Err(GuardFailure::ContractNotActive {
            contract: contract.id.clone(),
            state: contract.state_description(now),
        })
    }
}

/// credential(activity, data): Table II, join data (at activity), extended (paper IV-C (ii)):
/// the contract's credential grants its activity use of data of this kind (and source).
pub fn credential(
    contract: &ProcessingContract,
    credential: Option<&Credential>,
    data: &Data,
) -> Result<(), GuardFailure> {
    let granted = credential.is_some_and(|c| {
        c.uses.iter().any(|u| {
            u.kind == data.kind && u.source.as_ref().is_none_or(|s| s == &data.generated_by)
        })
    });
    if granted {
        Ok(())
    } else {
        Err(GuardFailure::NoCredential {
            activity: contract.contractor.clone(),
            contract: contract.id.clone(),
            data: data.id.clone(),
            kind: data.kind.clone(),
            source: data.generated_by.clone(),
        })
    }
}

/// not used(data, contract): Table II, join data (at activity): data joins its activity under a
/// contract once. `used_tx` is the transaction that recorded an earlier join, if any.
pub fn not_used(
    data: &Data,
    contract: &ProcessingContract,
    used_tx: Option<&[u8]>,
) -> Result<(), GuardFailure> {
    match used_tx {
        None => Ok(()),
        Some(tx) => Err(GuardFailure::AlreadyUsed {
            data: data.id.clone(),
            contract: contract.id.clone(),
            tx_id: String::from_utf8_lossy(tx).into_owned(),
        }),
    }
}

/// deadline-passed(contract): settling a contract as violated (EvaluateContract) needs a
/// stored-active contract whose deadline passed unfulfilled.
pub fn deadline_passed(contract: &ProcessingContract, now: Timestamp) -> Result<(), GuardFailure> {
    if contract.state == ContractState::Active && contract.state_at(now) != ContractState::Active {
        Ok(())
    } else {
        Err(GuardFailure::Precondition {
            condition: "deadline-passed(contract)",
            detail: format!(
                "contract {} is {} (deadline {})",
                contract.id,
                contract.state_description(now),
                contract.deadline
            ),
        })
    }
}

/// authorised(placement): a placement's outcome is reported once; a placement reported
/// running already takes no second outcome.
pub fn authorised(placement: &Placement) -> Result<(), GuardFailure> {
    if placement.status == PlacementStatus::Running {
        Err(GuardFailure::Precondition {
            condition: "authorised(placement)",
            detail: format!(
                "placement tx {} was reported running already",
                placement.stamp.tx_id
            ),
        })
    } else {
        Ok(())
    }
}

/// reported(placement): drift of a placement is recorded only once its outcome was reported
/// (RecordOutcome comes first).
pub fn reported(container: &Container, placement: &Placement) -> Result<(), GuardFailure> {
    if placement.status == PlacementStatus::Authorised {
        Err(GuardFailure::Precondition {
            condition: "reported(placement)",
            detail: format!("placement tx {} of container {} has no outcome yet; RecordOutcome reports it first", placement.stamp.tx_id, container.id),
        })
    } else {
        Ok(())
    }
}

/// left(container, tx): a removal's outcome is about the TERMINATE transaction `tx` in which
/// the container left.
pub fn left_in(container: &Container, tx: &str) -> Result<(), GuardFailure> {
    if container.left.as_ref().map(|d| d.stamp.tx_id.as_str()) == Some(tx) {
        Ok(())
    } else {
        Err(GuardFailure::Precondition {
            condition: "left(container, tx)",
            detail: format!(
                "container {} did not leave in tx {tx} (state: {})",
                container.id,
                Entity::Container(container.clone()).state_description()
            ),
        })
    }
}

/// signing-identity(activity): Table II, leave data (from activity), extended: a container
/// signs the data it generates with its own workload key, so it must have joined with one.
pub fn signing_identity(container: &Container) -> Result<&CertificateInfo, GuardFailure> {
    container
        .certificate
        .as_ref()
        .ok_or_else(|| GuardFailure::Precondition {
            condition: "signing-identity(activity)",
            detail: format!("container {} has no workload certificate; identify it with one to let it sign data", container.id),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AgentRef, Departure, Stamp};

    fn stamp(tx: &str) -> Stamp {
        Stamp {
            tx_id: tx.to_owned(),
            at: Timestamp::from_seconds(1_700_000_000),
            by: AgentRef {
                id: "Org1MSP/orchestrator".into(),
                msp_id: "Org1MSP".into(),
                common_name: "orchestrator".into(),
                role: None,
                certificate_sha256: String::new(),
            },
        }
    }

    /// Container `c1`, placed by `place_tx` on `device` in `status` (unplaced when `None`).
    fn container(placement: Option<(&str, &str, PlacementStatus)>) -> Container {
        Container {
            id: "c1".into(),
            org: "Org1MSP".into(),
            image: "tom/analyser".into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            publisher: None,
            certificate: None,
            proof: None,
            state: Lifecycle::Joined,
            joined: stamp("tx-join"),
            left: None,
            placement: placement.map(|(tx, device, status)| Placement {
                device: device.into(),
                stamp: stamp(tx),
                status,
                previous_device: None,
            }),
            last_failed_placement: None,
        }
    }

    /// `Ok` or the refusal as the caller reads it.
    fn check<T>(outcome: Result<T, GuardFailure>, expected: &str) {
        let got = match outcome {
            Ok(_) => "ok".to_owned(),
            Err(failure) => failure.to_string(),
        };
        assert_eq!(got, expected);
    }

    #[test]
    fn placement_guards() {
        use PlacementStatus::*;
        let running = container(Some(("tx-p", "edge-1", Running)));
        let authorised = container(Some(("tx-p", "edge-1", Authorised)));
        let unplaced = container(None);
        check(placed(&running), "ok");
        check(
            placed(&unplaced),
            "guard placed(container) failed: container c1 is joined but not placed on any device",
        );
        check(
            not_placed_on(&running, "edge-1"),
            "container c1 is placed on device edge-1 already (since tx tx-p)",
        );
        check(not_placed_on(&running, "edge-2"), "ok");
        check(
            not_placed_on(&container(Some(("tx-p", "edge-1", Missing))), "edge-1"),
            "ok",
        );
        check(current_placement(&running, Some("tx-p")), "ok");
        check(current_placement(&running, None), "ok");
        check(
            current_placement(&running, Some("tx-old")),
            "guard current-placement(container, tx) failed: placement tx tx-old is not container c1's current placement (current: tx tx-p on edge-1)",
        );
        check(
            current_placement(&unplaced, None),
            "guard current-placement(container, tx) failed: placement tx (any) is not container c1's current placement (current: none)",
        );
        check(authorised_guard(&authorised), "ok");
        check(
            authorised_guard(&running),
            "guard authorised(placement) failed: placement tx tx-p was reported running already",
        );
        check(
            reported(&authorised, authorised.placement.as_ref().unwrap()),
            "guard reported(placement) failed: placement tx tx-p of container c1 has no outcome yet; RecordOutcome reports it first",
        );
        check(
            reported(&running, running.placement.as_ref().unwrap()),
            "ok",
        );
    }

    fn authorised_guard(c: &Container) -> Result<(), GuardFailure> {
        authorised(c.placement.as_ref().unwrap())
    }

    #[test]
    fn removal_and_device_guards() {
        let mut left = container(None);
        left.state = Lifecycle::Left;
        left.left = Some(Departure {
            stamp: stamp("tx-leave"),
            reason: None,
        });
        check(left_in(&left, "tx-leave"), "ok");
        check(
            left_in(&left, "tx-p"),
            &format!(
                "guard left(container, tx) failed: container c1 did not leave in tx tx-p (state: {})",
                Entity::Container(left.clone()).state_description()
            ),
        );
        check(no_containers_placed("edge-1", vec![]), "ok");
        check(
            no_containers_placed("edge-1", vec!["c1".into(), "c2".into()]),
            "guard no-containers-placed failed: device edge-1 still hosts container(s) c1, c2",
        );
        check(
            signing_identity(&left),
            "guard signing-identity(activity) failed: container c1 has no workload certificate; identify it with one to let it sign data",
        );
    }
}
