//! The JSON arguments of each transaction, and the exact bytes that proofs sign.
//!
//! Unknown fields are rejected (`deny_unknown_fields`) so a typo never silently drops a value.
//! Signers (devices, workloads, publishers) build their messages with the functions here, so the
//! contract and its callers cannot disagree on the canonical bytes.

use serde::{Deserialize, Serialize};

use crate::model::{OrgPolicy, UseClause};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterOrg {
    pub msp_id: String,
    #[serde(default)]
    pub name: String,
    /// One or more PEM CA certificates that issue this organisation's identities.
    pub ca_certificates: Vec<String>,
    #[serde(default)]
    pub policy: OrgPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifyDevice {
    pub device_id: String,
    /// MSP id of the device's organisation, whose CA must have issued `certificate`.
    pub org: String,
    /// sensor, actuator, gateway, compute, vehicle, …
    pub kind: String,
    /// The device's X.509 certificate (PEM).
    pub certificate: String,
    /// Single-use nonce chosen by the device; never accepted twice.
    pub nonce: String,
    /// Base64 DER ECDSA P-256/SHA-256 signature by the device key over
    /// [`identify_device_message`].
    pub proof: String,
}

/// The canonical bytes of a device id-proof. The certificate is bound by its SHA-256 (hex, of
/// the DER bytes), so a proof cannot be replayed with another certificate.
pub fn identify_device_message(
    device_id: &str,
    org: &str,
    kind: &str,
    nonce: &str,
    certificate_sha256: &str,
) -> Vec<u8> {
    format!("tom/v1/identify-device\ndevice_id={device_id}\norg={org}\nkind={kind}\nnonce={nonce}\ncertificate_sha256={certificate_sha256}\n")
        .into_bytes()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminateEntity {
    pub id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherSignature {
    /// A publisher named in the org's policy.
    pub publisher: String,
    /// Base64 DER ECDSA P-256/SHA-256 signature over [`image_digest_message`].
    pub signature: String,
}

/// The bytes an image publisher signs: the digest text itself (`sha256:<hex>`).
pub fn image_digest_message(digest: &str) -> Vec<u8> {
    digest.as_bytes().to_vec()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifyContainer {
    pub container_id: String,
    pub org: String,
    /// Image reference, e.g. `registry.local/traffic/analyser:1.4`.
    pub image: String,
    /// `sha256:<64 lowercase hex>`.
    pub digest: String,
    #[serde(default)]
    pub publisher_signature: Option<PublisherSignature>,
    /// The workload's own certificate (PEM), if it signs the data it generates.
    #[serde(default)]
    pub certificate: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceContainer {
    pub container_id: String,
    pub device_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateClause {
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefineContract {
    pub contract_id: String,
    /// The activity (container, or an actuator device) contracted to do the work.
    pub contractor: String,
    #[serde(default)]
    pub uses: Vec<UseClause>,
    #[serde(default)]
    pub generates: Vec<GenerateClause>,
    /// RFC 3339.
    pub deadline: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordData {
    pub data_id: String,
    pub kind: String,
    /// `sha256:<64 lowercase hex>` of the off-chain bytes.
    pub hash: String,
    pub size: u64,
    /// Where the bytes are kept (URI).
    pub location: String,
    /// The generating activity: a device id (sensor) or a container id.
    pub generated_by: String,
    #[serde(default)]
    pub derived_from: Vec<String>,
    /// Base64 DER ECDSA P-256/SHA-256 signature over [`data_hash_message`] by the generator's key.
    pub signature: String,
}

/// The bytes a generator signs for a data item: the hash text itself (`sha256:<hex>`).
pub fn data_hash_message(hash: &str) -> Vec<u8> {
    hash.as_bytes().to_vec()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecContract {
    pub contract_id: String,
    pub data_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateContract {
    pub contract_id: String,
}

/// The orchestrator's report of how an authorised placement or removal went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordOutcome {
    pub container_id: String,
    /// `place` or `terminate`.
    pub action: String,
    /// The PLACE or TERMINATE transaction this reports on.
    pub authorising_tx: String,
    /// For `place`: `running` or `failed`; for `terminate`: `removed` or `failed`.
    pub outcome: String,
    #[serde(default)]
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordDrift {
    /// The orchestrator-side name of what drifted (e.g. a Swarm service name).
    pub service: String,
    #[serde(default)]
    pub container_id: Option<String>,
    pub description: String,
    #[serde(default)]
    pub action_taken: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ById {
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Up,
    Down,
    Both,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageQuery {
    pub id: String,
    #[serde(default)]
    pub direction: Direction,
    /// How many derivation steps to follow (default 8, at most 64).
    #[serde(default)]
    pub depth: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    /// `<msp_id>/<common name>`: only this agent's records.
    #[serde(default)]
    pub agent: Option<String>,
    /// Only records of this entity (device, container, data or contract id).
    #[serde(default)]
    pub entity: Option<String>,
    /// RFC 3339, inclusive.
    #[serde(default)]
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    #[serde(default)]
    pub to: Option<String>,
    /// At most this many records (default 100, at most 1000).
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub bookmark: Option<String>,
}
