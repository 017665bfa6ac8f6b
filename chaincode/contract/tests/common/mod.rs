//! The test world: a Fabric-faithful in-memory ledger, a controllable transaction clock, and
//! helpers that build correctly signed requests from the fixture identities.
#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "shared by tests and the benchmark: a failed setup step should panic"
)]

use base64::Engine;
use serde_json::{json, Value};
use tom_contract::memory::{MemoryLedger, SubmitError};
use tom_contract::requests::{image_digest_message, IdentifyContainer, IdentifyDevice, RecordData};
use tom_contract::{ContractError, Creator, Timestamp};
use tom_fixtures::Identity;

pub fn id(org: &str, name: &str) -> &'static Identity {
    tom_fixtures::identity(org, name)
}

pub fn creator(identity: &Identity) -> Creator {
    Creator {
        msp_id: identity.msp_id.to_owned(),
        certificate_pem: identity.cert_pem.as_bytes().to_vec(),
    }
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
    )
}

/// SHA-256 (hex) of a PEM certificate's DER bytes, as the contract binds it in id-proofs.
pub fn cert_sha256(pem: &str) -> String {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    hex::encode(ring::digest::digest(&ring::digest::SHA256, &block.contents))
}

/// 2026-06-01T00:00:00Z: inside every fixture's validity except the expired/future ones.
pub const START: Timestamp = Timestamp {
    seconds: 1_780_272_000,
    nanos: 0,
};

pub struct World {
    pub ledger: MemoryLedger,
    pub now: Timestamp,
    seq: u64,
}

impl Default for World {
    fn default() -> Self {
        World {
            ledger: MemoryLedger::new(),
            now: START,
            seq: 0,
        }
    }
}

impl World {
    pub fn new() -> Self {
        Self::default()
    }

    /// A world with Org1MSP and Org2MSP registered by their admins, as in the paper's smart
    /// city: Org2 (the mobility provider, whose car joins) shares its data with Org1 (the city),
    /// and consents to nothing else.
    pub fn with_orgs() -> Self {
        let mut w = World::new();
        w.register_org("org1", json!({})).unwrap();
        w.register_org("org2", json!({ "shares_data_with": ["Org1MSP"] }))
            .unwrap();
        w
    }

    pub fn tick(&mut self, seconds: i64) {
        self.now.seconds += seconds;
    }

    pub fn next_tx(&mut self) -> String {
        self.seq += 1;
        self.now.nanos = (self.seq % 1_000_000) as i32; // distinct, increasing timestamps
        format!("tx{:05}", self.seq)
    }

    pub fn submit(
        &mut self,
        who: &Identity,
        function: &str,
        arg: Value,
    ) -> Result<Value, SubmitError> {
        let arg = serde_json::to_vec(&arg).unwrap();
        self.submit_raw(who, function, &[&arg])
    }

    pub fn submit_raw(
        &mut self,
        who: &Identity,
        function: &str,
        args: &[&[u8]],
    ) -> Result<Value, SubmitError> {
        let tx = self.next_tx();
        let bytes = self
            .ledger
            .submit(&creator(who), &tx, self.now, function, args)?;
        Ok(serde_json::from_slice(&bytes).unwrap())
    }

    pub fn query(
        &mut self,
        who: &Identity,
        function: &str,
        arg: Value,
    ) -> Result<Value, ContractError> {
        let tx = self.next_tx();
        let arg = serde_json::to_vec(&arg).unwrap();
        let bytes = self
            .ledger
            .evaluate(&creator(who), &tx, self.now, function, &[&arg])?;
        Ok(serde_json::from_slice(&bytes).unwrap())
    }

    pub fn entity(&mut self, id: &str) -> Value {
        self.query(
            crate::common::id("org1", "auditor"),
            "GetEntity",
            json!({ "id": id }),
        )
        .unwrap()
    }

    pub fn register_org(&mut self, org: &str, policy: Value) -> Result<Value, SubmitError> {
        let o = tom_fixtures::org(org);
        self.submit(
            id(org, "admin"),
            "RegisterOrg",
            json!({ "msp_id": o.msp_id, "name": org, "ca_certificates": [o.ca_cert_pem], "policy": policy }),
        )
    }

    pub fn register_org_as(&mut self, who: &Identity, org: &str) -> Result<Value, SubmitError> {
        let o = tom_fixtures::org(org);
        self.submit(
            who,
            "RegisterOrg",
            json!({ "msp_id": o.msp_id, "ca_certificates": [o.ca_cert_pem] }),
        )
    }

    /// A correctly signed IdentifyDevice request for `device` (on channel `tom`).
    pub fn device_request(device_id: &str, device: &Identity, kind: &str, nonce: &str) -> Value {
        let req = IdentifyDevice::signed(
            device_id,
            device.msp_id,
            kind,
            device.cert_pem,
            nonce,
            tom_contract::simulation::DEFAULT_CHANNEL,
            |m| device.sign(m),
        )
        .unwrap();
        serde_json::to_value(req).unwrap()
    }

    pub fn identify_device(
        &mut self,
        device_id: &str,
        device: &Identity,
        kind: &str,
    ) -> Result<Value, SubmitError> {
        // The device's own organisation identifies it.
        self.identify_device_as(id(device.org, "orchestrator"), device_id, device, kind)
    }

    /// IdentifyDevice submitted by orchestrator `who`, with a fresh nonce.
    pub fn identify_device_as(
        &mut self,
        who: &Identity,
        device_id: &str,
        device: &Identity,
        kind: &str,
    ) -> Result<Value, SubmitError> {
        let nonce = format!("nonce-{}-{}", device_id, self.seq);
        self.submit(
            who,
            "IdentifyDevice",
            Self::device_request(device_id, device, kind, &nonce),
        )
    }

    pub fn container_request(container_id: &str, workload: Option<&Identity>) -> Value {
        Self::container_request_of(
            "Org1MSP",
            container_id,
            workload,
            &format!("nonce-{container_id}"),
        )
    }

    /// An IdentifyContainer request for a container of `org`; with a workload identity, its
    /// certificate and a proof of possession signed by the workload key.
    pub fn container_request_of(
        org: &str,
        container_id: &str,
        workload: Option<&Identity>,
        nonce: &str,
    ) -> Value {
        let req = IdentifyContainer {
            container_id: container_id.to_owned(),
            org: org.to_owned(),
            image: format!("registry.city.example/tom/{container_id}:1.0"),
            digest: sha256(format!("image of {container_id}").as_bytes()),
            publisher_signature: None,
            certificate: None,
            nonce: None,
            proof: None,
        };
        let req = match workload {
            Some(w) => req
                .with_workload_identity(
                    w.cert_pem,
                    nonce,
                    tom_contract::simulation::DEFAULT_CHANNEL,
                    |m| w.sign(m),
                )
                .unwrap(),
            None => req,
        };
        let mut value = serde_json::to_value(req).unwrap();
        // Absent optional fields stay absent, as a caller would send them.
        value.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        value
    }

    pub fn publisher_signature(digest: &str) -> Value {
        json!({ "publisher": "city-publisher", "signature": b64(&id("org1", "publisher").sign(&image_digest_message(digest))) })
    }

    pub fn identify_container(
        &mut self,
        container_id: &str,
        workload: Option<&Identity>,
    ) -> Result<Value, SubmitError> {
        self.identify_container_as(
            id("org1", "orchestrator"),
            "Org1MSP",
            container_id,
            workload,
        )
    }

    /// IdentifyContainer of a container of `org` by orchestrator `who`, with a fresh nonce.
    pub fn identify_container_as(
        &mut self,
        who: &Identity,
        org: &str,
        container_id: &str,
        workload: Option<&Identity>,
    ) -> Result<Value, SubmitError> {
        let nonce = format!("nonce-{container_id}-{}", self.seq);
        let request = Self::container_request_of(org, container_id, workload, &nonce);
        self.submit(who, "IdentifyContainer", request)
    }

    pub fn place(&mut self, container_id: &str, device_id: &str) -> Result<Value, SubmitError> {
        self.submit(
            id("org1", "orchestrator"),
            "PlaceContainer",
            json!({ "container_id": container_id, "device_id": device_id }),
        )
    }

    pub fn define_contract(
        &mut self,
        contract_id: &str,
        contractor: &str,
        uses: Value,
        generates: Value,
    ) -> Result<Value, SubmitError> {
        let deadline = Timestamp {
            seconds: self.now.seconds + 3_600,
            nanos: 0,
        }
        .to_rfc3339();
        self.submit(
            id("org1", "orchestrator"),
            "DefineContract",
            json!({ "contract_id": contract_id, "contractor": contractor, "uses": uses, "generates": generates, "deadline": deadline }),
        )
    }

    /// RecordData submitted by `recorder`, signed by `signer` (normally the generator's key).
    pub fn record_data(
        &mut self,
        recorder: &Identity,
        signer: &Identity,
        data_id: &str,
        kind: &str,
        generated_by: &str,
        derived_from: &[&str],
    ) -> Result<Value, SubmitError> {
        let request = Self::data_request(signer, data_id, kind, generated_by, derived_from);
        self.submit(recorder, "RecordData", request)
    }

    /// A RecordData request whose claim `signer` signed for channel `tom`.
    pub fn data_request(
        signer: &Identity,
        data_id: &str,
        kind: &str,
        generated_by: &str,
        derived_from: &[&str],
    ) -> Value {
        let bytes = format!("payload of {data_id}");
        let req = RecordData {
            data_id: data_id.to_owned(),
            kind: kind.to_owned(),
            hash: sha256(bytes.as_bytes()),
            size: bytes.len() as u64,
            location: format!("file:///var/lib/tom/data/{data_id}"),
            generated_by: generated_by.to_owned(),
            derived_from: derived_from.iter().map(|s| (*s).to_owned()).collect(),
            claim: Default::default(),
        }
        .sign(
            tom_contract::simulation::DEFAULT_CHANNEL,
            &signer.cert_sha256(),
            |m| signer.sign(m),
        )
        .unwrap();
        serde_json::to_value(req).unwrap()
    }

    pub fn exec(
        &mut self,
        who: &Identity,
        contract_id: &str,
        data_id: &str,
    ) -> Result<Value, SubmitError> {
        self.submit(
            who,
            "ExecContract",
            json!({ "contract_id": contract_id, "data_id": data_id }),
        )
    }

    /// Count of committed ledger records (all kinds).
    pub fn record_count(&mut self) -> usize {
        let page = self
            .query(
                id("org1", "auditor"),
                "QueryRecords",
                json!({ "page_size": 1000 }),
            )
            .unwrap();
        page["records"].as_array().unwrap().len()
    }
}

/// The message of a rejected transaction (panics if it committed).
pub fn rejection(result: Result<Value, SubmitError>) -> (u16, String) {
    match result {
        Ok(v) => panic!("expected a rejection, but it committed: {v}"),
        Err(SubmitError::Rejected(e)) => (e.status(), e.to_string()),
        Err(other) => panic!("expected a contract rejection, got {other}"),
    }
}

/// Assert a rejection whose status and message match, and return the message.
#[track_caller]
pub fn assert_rejected(
    result: Result<Value, SubmitError>,
    status: u16,
    fragments: &[&str],
) -> String {
    let (got, message) = rejection(result);
    assert_eq!(got, status, "status of: {message}");
    for f in fragments {
        assert!(
            message.contains(f),
            "message {message:?} should contain {f:?}"
        );
    }
    message
}
