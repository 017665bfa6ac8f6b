//! What the contract stores: organisations, the three kinds of PROV entity (device, container,
//! data), processing contracts with their credentials, and one ledger record per transaction.
//!
//! Every type serialises with a fixed field order and `BTreeMap`s only, so every endorsing peer
//! writes byte-identical values.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ledger::Timestamp;

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::time::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid RFC 3339 timestamp {text:?}")))
    }
}

/// On the wire a timestamp is an RFC 3339 string in UTC (what `Serialize` above writes).
impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 timestamp in UTC, with up to nanosecond precision",
        })
    }
}

/// A role carried in the creator certificate's `tom.role` attribute.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Orchestrator,
    Device,
    Auditor,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "orchestrator" => Some(Role::Orchestrator),
            "device" => Some(Role::Device),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Orchestrator => "orchestrator",
            Role::Device => "device",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who did something: a PROV agent, identified by its certificate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct AgentRef {
    /// `<msp_id>/<common name>`: the key under which the agent's records are indexed.
    pub id: String,
    pub msp_id: String,
    pub common_name: String,
    pub role: Option<Role>,
    /// Hex SHA-256 of the certificate's DER bytes: which certificate signed.
    pub certificate_sha256: String,
}

/// When and by which transaction something happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Stamp {
    pub tx_id: String,
    pub at: Timestamp,
    pub by: AgentRef,
}

/// A registered organisation: its MSP id, the CAs that issue its identities, and its policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Org {
    pub msp_id: String,
    pub name: String,
    pub ca_certificates_pem: Vec<String>,
    pub policy: OrgPolicy,
    pub registered: Stamp,
}

/// What an organisation demands of its containers, and which other organisations it consents
/// to acting on its entities (see ARCHITECTURE.md, "Organisation boundaries"). Every consent
/// list is empty by default: an organisation's entities are its own until it says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgPolicy {
    /// Organisations whose orchestrators may act for this one: identify and terminate its
    /// devices and containers, place its containers, define contracts for its activities,
    /// record data on behalf of its generators and report outcomes and drift of its containers.
    #[serde(default)]
    pub orchestrators: std::collections::BTreeSet<String>,
    /// Organisations whose containers may be placed on this organisation's devices.
    #[serde(default)]
    pub hosts_containers_of: std::collections::BTreeSet<String>,
    /// Organisations whose activities may use this organisation's data (execute a contract on
    /// it, or derive data from it).
    #[serde(default)]
    pub shares_data_with: std::collections::BTreeSet<String>,
    /// When true, a container of this org joins only with a publisher signature over its digest.
    #[serde(default)]
    pub require_image_signature: bool,
    /// Trusted image publishers: name → X.509 certificate (PEM) whose key signs image digests.
    #[serde(default)]
    pub publishers: std::collections::BTreeMap<String, String>,
}

/// The three kinds of PROV entity TOM tracks; one id namespace for all three.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EntityType {
    Device,
    Container,
    Data,
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntityType::Device => "device",
            EntityType::Container => "container",
            EntityType::Data => "data",
        })
    }
}

/// Joined or left: the two states of the paper's device and container lifecycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    Joined,
    Left,
}

/// How an entity left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Departure {
    pub stamp: Stamp,
    pub reason: Option<String>,
}

/// An X.509 identity as recorded at join time (the IDENTITY record's proof material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CertificateInfo {
    pub pem: String,
    pub sha256: String,
    pub subject: String,
    pub issuer: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Device {
    pub id: String,
    pub org: String,
    /// What the device is: sensor, actuator, gateway, compute, vehicle…
    pub kind: String,
    pub certificate: CertificateInfo,
    /// The nonce of the accepted id-proof.
    pub proof_nonce: String,
    /// The accepted id-proof (DSSE envelope signed by the device key), for later audit.
    /// Empty for devices recorded before proofs were envelopes.
    #[serde(default)]
    pub proof: crate::claims::Envelope,
    pub state: Lifecycle,
    pub joined: Stamp,
    pub left: Option<Departure>,
    /// The orchestrator's name for the device (e.g. the Swarm node id), as the orchestrator
    /// that identified it bound it. Not part of the device's own claim: it is the binding the
    /// orchestrator asserts, signed by that orchestrator as the transaction's creator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Whether the device can run workloads now, as the orchestrator last observed it (absent:
    /// never reported otherwise since it joined). An unavailable device has not left: its
    /// identity and placements stand (a maintenance window, a node that stopped answering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<DeviceAvailability>,
}

/// A device's availability as last reported (by a DRIFT record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceAvailability {
    pub status: DeviceStatus,
    pub reason: String,
    pub reported: Stamp,
}

/// Available to run workloads, or not (without having left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Available,
    Unavailable,
}

/// Where a container runs (the ORCHESTRATE(deployed, location) record's current state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Placement {
    pub device: String,
    pub stamp: Stamp,
    pub status: PlacementStatus,
    pub previous_device: Option<String>,
}

/// How far the orchestrator has carried out an authorised placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlacementStatus {
    /// The PLACE transaction committed; the orchestrator has not reported the outcome yet.
    Authorised,
    /// The orchestrator reported the container running on the device.
    Running,
    /// Reported by drift: the service carrying the placement is gone from the orchestrator,
    /// removed outside TOM. The placement stands until it is re-placed or terminated.
    Missing,
    /// Reported by drift: the service exists but has no running task (the workload stopped).
    Stopped,
    /// Reported by drift: the device is unavailable (drained, down), so the container does not
    /// run there now; it runs again when the device is back.
    Unavailable,
    /// Reported by drift: what runs differs from what was authorised (image, node, mounts…).
    Drifted,
}

impl PlacementStatus {
    /// Whether the placement still claims (or is about to claim) that the container runs.
    pub fn is_active(self) -> bool {
        matches!(self, PlacementStatus::Authorised | PlacementStatus::Running)
    }
}

/// The last placement that failed to run, kept so the ledger shows why a container is unplaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FailedPlacement {
    pub device: String,
    pub placement_tx: String,
    pub reported: Stamp,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Container {
    pub id: String,
    pub org: String,
    pub image: String,
    /// `sha256:<64 hex>`: the image the container must run.
    pub digest: String,
    /// The publisher whose signature over the digest was verified, if one was given.
    pub publisher: Option<String>,
    /// The workload's own identity, if it has one: the key that signs the data it generates.
    pub certificate: Option<CertificateInfo>,
    /// The workload's accepted proof of key possession (with `certificate`).
    #[serde(default)]
    pub proof: Option<crate::claims::Envelope>,
    pub state: Lifecycle,
    pub joined: Stamp,
    pub left: Option<Departure>,
    pub placement: Option<Placement>,
    pub last_failed_placement: Option<FailedPlacement>,
}

/// A data item that left a sensor or activity (PROV-DATA); the bytes stay off-chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Data {
    pub id: String,
    pub kind: String,
    /// `sha256:<64 hex>` of the off-chain bytes.
    pub hash: String,
    pub size: u64,
    /// Where the bytes are kept (a URI).
    pub location: String,
    /// The generating activity: a device (sensor) or a container.
    pub generated_by: String,
    pub generator_type: EntityType,
    /// For container activities, the device the container was placed on when it generated this.
    pub host_device: Option<String>,
    pub derived_from: Vec<String>,
    /// The organisation the data belongs to: its generator's.
    #[serde(default)]
    pub org: String,
    /// The generator's signed claim (DSSE envelope over an in-toto statement binding every
    /// field above and the ledger), as it was accepted. Empty for data recorded before claims
    /// were envelopes.
    #[serde(default)]
    pub claim: crate::claims::Envelope,
    /// Hex SHA-256 of the certificate whose key signed.
    pub signer_certificate_sha256: String,
    /// Contracts whose GENERATE obligations this data fulfilled.
    pub fulfils: Vec<String>,
    pub recorded: Stamp,
}

/// A stored entity; the `type` tag keeps one namespace for devices, containers and data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "entities are read, changed and written one at a time; boxing would only add indirection"
)]
pub enum Entity {
    Device(Device),
    Container(Container),
    Data(Data),
}

impl Entity {
    pub fn entity_type(&self) -> EntityType {
        match self {
            Entity::Device(_) => EntityType::Device,
            Entity::Container(_) => EntityType::Container,
            Entity::Data(_) => EntityType::Data,
        }
    }

    /// The organisation the entity belongs to (for data: its generator's).
    pub fn org(&self) -> &str {
        match self {
            Entity::Device(d) => &d.org,
            Entity::Container(c) => &c.org,
            Entity::Data(d) => &d.org,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Entity::Device(d) => &d.id,
            Entity::Container(c) => &c.id,
            Entity::Data(d) => &d.id,
        }
    }

    /// Joined/left for devices and containers; data has no such lifecycle.
    pub fn lifecycle(&self) -> Option<Lifecycle> {
        match self {
            Entity::Device(d) => Some(d.state),
            Entity::Container(c) => Some(c.state),
            Entity::Data(_) => None,
        }
    }

    /// The state in words, with the transaction that put it there, for error messages.
    pub fn state_description(&self) -> String {
        let (state, joined, left) = match self {
            Entity::Device(d) => (d.state, &d.joined, &d.left),
            Entity::Container(c) => (c.state, &c.joined, &c.left),
            Entity::Data(d) => {
                return format!(
                    "data that left at tx {} ({})",
                    d.recorded.tx_id, d.recorded.at
                )
            }
        };
        match (state, left) {
            (Lifecycle::Left, Some(departure)) => {
                format!(
                    "left (since tx {} at {})",
                    departure.stamp.tx_id, departure.stamp.at
                )
            }
            _ => format!("joined (since tx {} at {})", joined.tx_id, joined.at),
        }
    }
}

/// One USE clause: inputs of a kind, optionally only from one source entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UseClause {
    pub kind: String,
    #[serde(default)]
    pub source: Option<String>,
}

/// One GENERATE obligation and the data that fulfilled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Obligation {
    pub kind: String,
    pub fulfilled_by: Option<String>,
    pub fulfilled_tx: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContractState {
    Active,
    Fulfilled,
    Violated,
}

impl fmt::Display for ContractState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContractState::Active => "active",
            ContractState::Fulfilled => "fulfilled",
            ContractState::Violated => "violated",
        })
    }
}

/// A processing contract between an orchestrator and an activity (paper, Section IV-C).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessingContract {
    pub id: String,
    pub contractor: String,
    pub uses: Vec<UseClause>,
    pub generates: Vec<Obligation>,
    pub deadline: Timestamp,
    pub state: ContractState,
    pub defined: Stamp,
    /// The transaction that moved it out of `active`.
    pub settled: Option<Stamp>,
}

impl ProcessingContract {
    /// The state as of `now`: an active contract whose deadline has passed is violated.
    pub fn state_at(&self, now: Timestamp) -> ContractState {
        match self.state {
            ContractState::Active if now > self.deadline => ContractState::Violated,
            state => state,
        }
    }

    pub fn state_description(&self, now: Timestamp) -> String {
        match self.state_at(now) {
            ContractState::Violated if self.state == ContractState::Active => {
                format!("violated (deadline {} passed unfulfilled)", self.deadline)
            }
            state => match &self.settled {
                Some(s) => format!("{state} (since tx {} at {})", s.tx_id, s.at),
                None => state.to_string(),
            },
        }
    }
}

/// The credential a contract grants its contractor: permission to USE these inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Credential {
    pub contract: String,
    pub activity: String,
    pub uses: Vec<UseClause>,
    pub granted: Stamp,
}

/// The kind of a ledger record; also the name of the chaincode event each transaction emits.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum RecordKind {
    #[serde(rename = "ORG")]
    Org,
    #[serde(rename = "PROV-ID-create")]
    ProvIdCreate,
    #[serde(rename = "PROV-ID-delete")]
    ProvIdDelete,
    #[serde(rename = "ORCHESTRATE")]
    Orchestrate,
    #[serde(rename = "CONTRACT")]
    Contract,
    #[serde(rename = "PROV-DATA")]
    ProvData,
    #[serde(rename = "PROV-ORCH")]
    ProvOrch,
    #[serde(rename = "OUTCOME")]
    Outcome,
    #[serde(rename = "DRIFT")]
    Drift,
}

impl RecordKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RecordKind::Org => "ORG",
            RecordKind::ProvIdCreate => "PROV-ID-create",
            RecordKind::ProvIdDelete => "PROV-ID-delete",
            RecordKind::Orchestrate => "ORCHESTRATE",
            RecordKind::Contract => "CONTRACT",
            RecordKind::ProvData => "PROV-DATA",
            RecordKind::ProvOrch => "PROV-ORCH",
            RecordKind::Outcome => "OUTCOME",
            RecordKind::Drift => "DRIFT",
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a record says, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum RecordBody {
    RegisterOrg {
        msp_id: String,
        ca_certificates: usize,
        require_image_signature: bool,
    },
    /// IDENTITY(object, id-proof) + PROV-ID-create.
    Identify {
        entity_type: EntityType,
        entity: String,
        org: String,
        proof: String,
        /// For a device: the orchestrator's node the device was bound to, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node_id: Option<String>,
    },
    /// PROV-ID-delete.
    Terminate {
        entity_type: EntityType,
        entity: String,
        reason: Option<String>,
        location: Option<String>,
    },
    /// ORCHESTRATE(deployed, location).
    Place {
        deployed: String,
        location: String,
        previous_location: Option<String>,
    },
    DefineContract {
        contract: String,
        contractor: String,
        uses: Vec<UseClause>,
        generates: Vec<String>,
        deadline: Timestamp,
    },
    SettleContract {
        contract: String,
        state: ContractState,
    },
    /// PROV(data, origin: activity-generates).
    RecordData {
        data: String,
        kind: String,
        hash: String,
        generated_by: String,
        host_device: Option<String>,
        derived_from: Vec<String>,
        fulfils: Vec<String>,
    },
    /// PROV(data, receiver: activity-uses) under a contract: the EXEC.
    ExecContract {
        data: String,
        activity: String,
        contract: String,
        host_device: Option<String>,
    },
    /// The orchestrator's report of how a placement or removal went.
    Outcome {
        container: String,
        action: String,
        authorising_tx: String,
        outcome: String,
        detail: String,
    },
    /// Swarm state that differs from what the ledger authorised.
    Drift {
        service: String,
        container: Option<String>,
        description: String,
        action_taken: Option<String>,
        /// The container's placement status this drift set, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        placement_status: Option<PlacementStatus>,
        /// The device whose availability this drift set, and to what.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_status: Option<DeviceStatus>,
    },
}

/// The record every committed transaction writes, indexed by time, agent and entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LedgerRecord {
    pub kind: RecordKind,
    pub tx_id: String,
    pub timestamp: Timestamp,
    pub agent: AgentRef,
    /// Ids of the entities (and contracts) the record is about, in a fixed order.
    pub subjects: Vec<String>,
    pub body: RecordBody,
}
