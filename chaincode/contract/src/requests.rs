//! The JSON arguments of each transaction, and the exact bytes that proofs sign.
//!
//! Unknown fields are rejected (`deny_unknown_fields`) so a typo never silently drops a value.
//! Signers (devices, workloads, publishers) build their messages with the functions here, so the
//! contract and its callers cannot disagree on the canonical bytes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::claims::{self, DataGeneration, Envelope, IdentityProof, Statement};
use crate::model::{OrgPolicy, UseClause};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    /// The device's proof of key possession: a DSSE envelope, signed by the certificate's key,
    /// over the in-toto statement [`IdentifyDevice::statement`] describes.
    pub proof: Envelope,
    /// The orchestrator's node for the device (e.g. a Swarm node id), recorded on the device
    /// and in its IDENTITY record. The orchestrator's assertion, not the device's claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

impl IdentifyDevice {
    /// The statement the proof must carry: this device, pinned by its certificate's SHA-256,
    /// of `org` and `kind`, with `nonce`, for ledger `ledger`.
    pub fn statement(&self, certificate_sha256: &str, ledger: &str) -> Statement<IdentityProof> {
        claims::identity_statement(
            &self.device_id,
            certificate_sha256,
            IdentityProof {
                ledger: ledger.to_owned(),
                entity_type: "device".to_owned(),
                org: self.org.clone(),
                kind: self.kind.clone(),
                nonce: self.nonce.clone(),
            },
        )
    }

    /// Build a device's join request for ledger (channel) `ledger`, signing its proof with
    /// `sign` (the device key; DER ECDSA P-256/SHA-256). The one builder every signer uses.
    pub fn signed(
        device_id: &str,
        org: &str,
        kind: &str,
        certificate_pem: &str,
        nonce: &str,
        ledger: &str,
        sign: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<IdentifyDevice, String> {
        let certificate = crate::identity::Certificate::from_pem_cached(certificate_pem)?;
        let certificate_sha256 = certificate.info.sha256.as_str();
        let mut req = IdentifyDevice {
            device_id: device_id.to_owned(),
            org: org.to_owned(),
            kind: kind.to_owned(),
            certificate: certificate_pem.to_owned(),
            nonce: nonce.to_owned(),
            proof: Envelope::default(),
            node_id: None,
        };
        req.proof = Envelope::sign(
            &req.statement(certificate_sha256, ledger),
            certificate_sha256,
            sign,
        )?;
        Ok(req)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminateEntity {
    pub id: String,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    /// The workload's own certificate (PEM), if it signs the data it generates. It needs
    /// `nonce` and `proof` as a device certificate does: a certificate joins only with proof
    /// that its key is held.
    #[serde(default)]
    pub certificate: Option<String>,
    /// Single-use nonce of the workload's proof (with `certificate`).
    #[serde(default)]
    pub nonce: Option<String>,
    /// DSSE envelope signed by the workload key over [`IdentifyContainer::statement`].
    #[serde(default)]
    pub proof: Option<Envelope>,
}

impl IdentifyContainer {
    /// The statement a workload's proof must carry: this container, pinned by its
    /// certificate's SHA-256, of `org` and image `digest`, with `nonce`, for ledger `ledger`.
    pub fn statement(
        &self,
        certificate_sha256: &str,
        nonce: &str,
        ledger: &str,
    ) -> Statement<IdentityProof> {
        claims::identity_statement(
            &self.container_id,
            certificate_sha256,
            IdentityProof {
                ledger: ledger.to_owned(),
                entity_type: "container".to_owned(),
                org: self.org.clone(),
                kind: self.digest.clone(),
                nonce: nonce.to_owned(),
            },
        )
    }

    /// Add the workload's certificate and its proof of possession for ledger `ledger`, signed
    /// with `sign` (the workload key).
    pub fn with_workload_identity(
        mut self,
        certificate_pem: &str,
        nonce: &str,
        ledger: &str,
        sign: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<IdentifyContainer, String> {
        let certificate = crate::identity::Certificate::from_pem_cached(certificate_pem)?;
        let certificate_sha256 = certificate.info.sha256.as_str();
        self.certificate = Some(certificate_pem.to_owned());
        self.nonce = Some(nonce.to_owned());
        self.proof = Some(Envelope::sign(
            &self.statement(certificate_sha256, nonce, ledger),
            certificate_sha256,
            sign,
        )?);
        Ok(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceContainer {
    pub container_id: String,
    pub device_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateClause {
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    /// The generator's signed claim: a DSSE envelope, signed by the generator's key, over the
    /// in-toto statement [`RecordData::statement`] describes. It binds every field above and
    /// the ledger, so a signature cannot be re-used for another claim.
    pub claim: Envelope,
}

impl RecordData {
    /// The statement the claim must carry for these fields on ledger `ledger`.
    pub fn statement(&self, ledger: &str) -> Statement<DataGeneration> {
        claims::data_statement(
            &self.data_id,
            &self.hash,
            DataGeneration {
                ledger: ledger.to_owned(),
                kind: self.kind.clone(),
                size: self.size,
                location: self.location.clone(),
                generated_by: self.generated_by.clone(),
                derived_from: self.derived_from.clone(),
            },
        )
    }

    /// Sign these fields (in `self`, whose `claim` is replaced) as the generator, with `sign`
    /// (its key; DER ECDSA P-256/SHA-256). `keyid` is the signer certificate's SHA-256 (hex).
    pub fn sign(
        mut self,
        ledger: &str,
        keyid: &str,
        sign: impl FnOnce(&[u8]) -> Vec<u8>,
    ) -> Result<RecordData, String> {
        self.claim = Envelope::sign(&self.statement(ledger), keyid, sign)?;
        Ok(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecContract {
    pub contract_id: String,
    pub data_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateContract {
    pub contract_id: String,
}

/// The orchestrator's report of how an authorised placement or removal went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordOutcome {
    pub container_id: String,
    /// `place` or `terminate`.
    pub action: crate::model::ReportedAction,
    /// The PLACE or TERMINATE transaction this reports on.
    pub authorising_tx: String,
    /// For `place`: `running` or `failed`; for `terminate`: `removed` or `failed`.
    pub outcome: crate::model::ReportedOutcome,
    #[serde(default)]
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordDrift {
    /// The orchestrator-side name of what drifted (e.g. a Swarm service name).
    pub service: String,
    #[serde(default)]
    pub container_id: Option<String>,
    pub description: String,
    #[serde(default)]
    pub action_taken: Option<String>,
    /// Set the container's placement status to what was observed (`missing`, `stopped`,
    /// `unavailable`, `drifted`, or `running` again); needs `container_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_status: Option<crate::model::PlacementStatus>,
    /// With `placement_status`: the placement it is about must be this (current) PLACE tx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorising_tx: Option<String>,
    /// A device whose availability was observed to change (`device_status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_status: Option<crate::model::DeviceStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ById {
    pub id: String,
}

/// One request type per transaction: where two transactions take the same fields, each has its
/// own type wrapping them (serialised exactly as the fields alone), so the type names the
/// transaction (see [`crate::transaction::Transaction`]).
macro_rules! same_fields {
    ($($(#[$doc:meta])* $name:ident($fields:ty);)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub $fields);
    )*};
}

same_fields! {
    /// `TerminateDevice`: a device leaves.
    TerminateDevice(TerminateEntity);
    /// `TerminateContainer`: a container leaves.
    TerminateContainer(TerminateEntity);
    /// `GetEntity`: a device, container, data item or contract by id.
    GetEntity(ById);
    /// `GetHistory`: every committed version of an entity or contract.
    GetHistory(ById);
    /// `GetOrg`: a registered organisation by MSP id.
    GetOrg(ById);
    /// `GetRecord`: the ledger record a transaction (by id) wrote.
    GetRecord(ById);
    /// `GetLineage`: an entity's lineage.
    GetLineage(LineageQuery);
    /// `ExportProv`: an entity's lineage as a W3C PROV-JSON document.
    ExportProv(LineageQuery);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Up,
    Down,
    Both,
}

/// A lineage walk. Its cost is bounded by what it answers, not by the ledger: an answer holds
/// at most `limit` nodes and follows at most `fan_out` neighbours of a node per relation kind;
/// a walk cut short says `truncated` and returns a `bookmark` that continues it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LineageQuery {
    pub id: String,
    #[serde(default)]
    pub direction: Direction,
    /// How many derivation steps to follow (default 8, at most 64).
    #[serde(default)]
    pub depth: Option<u32>,
    /// At most this many nodes in one answer (default 500, at most 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// At most this many neighbours followed per node and relation kind in one answer
    /// (default 100, at most 1000); the rest come with the bookmark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fan_out: Option<u32>,
    /// The `bookmark` of a truncated answer to this query: continues the walk where it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bookmark: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
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

/// The device states `ListDevices` filters on (`joined` includes available and unavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStateFilter {
    Joined,
    Left,
    Available,
    Unavailable,
}

/// `ListDevices`: devices, optionally of one organisation and in one state, by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicesQuery {
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub state: Option<DeviceStateFilter>,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub bookmark: Option<String>,
}

/// The container states `ListContainers` filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContainerStateFilter {
    Joined,
    Left,
}

/// `ListContainers`: the containers placed on `device`, or containers by organisation and
/// state, by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainersQuery {
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub state: Option<ContainerStateFilter>,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub bookmark: Option<String>,
}

/// `ListContracts`: contracts, optionally in one effective state (as of the query's time:
/// an active contract whose deadline passed counts as violated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractsQuery {
    #[serde(default)]
    pub state: Option<crate::model::ContractState>,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub bookmark: Option<String>,
}
