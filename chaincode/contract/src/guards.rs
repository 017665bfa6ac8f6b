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
//! | outcome / drift of a placement | [`current_placement`]      |
//! | settle contract   | [`deadline_passed`]                      |

use std::fmt;

use serde::Serialize;

use crate::ledger::Timestamp;
use crate::model::{
    Container, ContractState, Credential, Data, Entity, EntityType, Lifecycle, Placement,
    ProcessingContract,
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
