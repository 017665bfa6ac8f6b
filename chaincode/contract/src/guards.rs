//! The guards of the paper's state machine (Table II) as values.
//!
//! A guard either holds or yields a [`GuardFailure`] that says which entity, which state it is in
//! and which condition failed. A transition evaluates all of its guards with [`Guards`] and is
//! refused with every failure listed, so the caller learns everything wrong at once.
//!
//! | transition        | guard                                   |
//! |-------------------|-----------------------------------------|
//! | leave device      | joined(device), no container placed on it |
//! | leave container   | joined(container)                       |
//! | join data (EXEC)  | left(data), joined+placed(activity), credential under an active contract |
//! | place container   | joined(container), joined(device)        |

use std::fmt;

use serde::Serialize;

use crate::model::{Entity, EntityType, Lifecycle};

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
