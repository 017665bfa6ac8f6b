//! The paper's smart-city scenario (Section VI) as a sequence of real transactions, run on a
//! network of one or more driver peers. With several peers every transaction is endorsed by all
//! of them at once and their endorsements must be byte-identical (requests, response, event and
//! read-write set) before it is committed to each: the determinism an AND endorsement policy
//! needs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use base64::Engine;
use serde_json::{json, Value};
use tom_contract::requests::{IdentifyContainer, IdentifyDevice, RecordData};
use tom_contract::Timestamp;
use tom_fixtures::Identity;

use super::{id, sha256, tx, Endorsement, Peer, SignedTx, TxClock, CHANNEL};

pub struct Network {
    pub peers: Vec<Peer>,
    pub clock: TxClock,
    /// Endorsements compared across peers so far.
    pub compared: AtomicUsize,
    /// Every proposal and its (agreed) endorsement, in order, and whether it was committed.
    pub log: Mutex<Vec<(SignedTx, Endorsement, bool)>>,
}

/// A refused transaction: (status, message).
pub type Refusal = (i32, String);

impl Network {
    pub fn new(peers: Vec<Peer>) -> Self {
        Network {
            peers,
            clock: TxClock::default(),
            compared: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        }
    }

    /// Endorse on every peer concurrently, require identical endorsements, then commit on every
    /// peer if the chaincode accepted it.
    pub async fn submit(
        &self,
        who: &Identity,
        function: &str,
        arg: Value,
    ) -> Result<Value, Refusal> {
        let endorsement = self.endorse_all(who, function, arg).await;
        if !endorsement.ok() {
            return Err((endorsement.response.status, endorsement.response.message));
        }
        for peer in &self.peers {
            peer.commit(&endorsement)
                .unwrap_or_else(|e| panic!("{} could not commit: {e}", peer.name));
        }
        if let Some(last) = self.log.lock().unwrap().last_mut() {
            last.2 = true;
        }
        Ok(endorsement.json())
    }

    /// Evaluate (endorse without commit) on every peer; answers must agree.
    pub async fn query(
        &self,
        who: &Identity,
        function: &str,
        arg: Value,
    ) -> Result<Value, Refusal> {
        let endorsement = self.endorse_all(who, function, arg).await;
        if !endorsement.ok() {
            return Err((endorsement.response.status, endorsement.response.message));
        }
        Ok(endorsement.json())
    }

    pub async fn endorse_all(&self, who: &Identity, function: &str, arg: Value) -> Endorsement {
        let proposal = tx(&self.clock, who, function, &arg);
        let endorsements =
            futures::future::join_all(self.peers.iter().map(|p| p.endorse(&proposal))).await;
        let (first, rest) = endorsements.split_first().unwrap();
        for (peer, other) in self.peers.iter().skip(1).zip(rest) {
            let context = format!(
                "{function} endorsed by {} and {}",
                self.peers[0].name, peer.name
            );
            assert_eq!(
                first.requests, other.requests,
                "{context}: different requests"
            );
            assert_eq!(first.kind, other.kind, "{context}: different outcome");
            assert_eq!(
                first.response, other.response,
                "{context}: different responses"
            );
            assert_eq!(first.event, other.event, "{context}: different events");
            assert_eq!(
                first.rwset, other.rwset,
                "{context}: different read-write sets"
            );
            self.compared.fetch_add(1, Ordering::SeqCst);
        }
        assert_eq!(
            first.open_iterators, 0,
            "{function}: the chaincode left a query iterator open"
        );
        self.log
            .lock()
            .unwrap()
            .push((proposal, first.clone(), false));
        first.clone()
    }

    // --- request builders ----------------------------------------------------------------

    /// Register `org`. As in the paper's smart city, Org2 (the mobility provider) shares its
    /// data with Org1 (the city); nothing else crosses organisations.
    pub async fn register_org(&self, org: &str) -> Result<Value, Refusal> {
        let o = tom_fixtures::org(org);
        let policy = if o.msp_id == "Org2MSP" {
            json!({ "shares_data_with": ["Org1MSP"] })
        } else {
            json!({})
        };
        let request = json!({ "msp_id": o.msp_id, "name": org, "ca_certificates": [o.ca_cert_pem], "policy": policy });
        self.submit(id(org, "admin"), "RegisterOrg", request).await
    }

    pub async fn identify_device(
        &self,
        device_id: &str,
        device: &Identity,
        kind: &str,
    ) -> Result<Value, Refusal> {
        let nonce = format!("nonce-{device_id}-{}", self.clock.now().seconds);
        let request = device_request(device_id, device, kind, &nonce);
        // The device's own organisation identifies it.
        let orchestrator = id(device.org, "orchestrator");
        self.submit(orchestrator, "IdentifyDevice", request).await
    }

    pub async fn identify_container(
        &self,
        container_id: &str,
        workload: &Identity,
    ) -> Result<Value, Refusal> {
        let request = IdentifyContainer {
            container_id: container_id.to_owned(),
            org: "Org1MSP".to_owned(),
            image: format!("registry.city.example/tom/{container_id}:1.0"),
            digest: format!("sha256:{}", hex::encode(sha256(container_id.as_bytes()))),
            publisher_signature: None,
            certificate: None,
            nonce: None,
            proof: None,
        }
        .with_workload_identity(
            workload.cert_pem,
            &format!("nonce-{container_id}-{}", self.clock.now().seconds),
            CHANNEL,
            |m| workload.sign(m),
        )
        .unwrap();
        let request = serde_json::to_value(request).unwrap();
        self.submit(id("org1", "orchestrator"), "IdentifyContainer", request)
            .await
    }

    pub async fn place(&self, container_id: &str, device_id: &str) -> Result<Value, Refusal> {
        let request = json!({ "container_id": container_id, "device_id": device_id });
        self.submit(id("org1", "orchestrator"), "PlaceContainer", request)
            .await
    }

    pub async fn define_contract(
        &self,
        contract_id: &str,
        contractor: &str,
        uses: Value,
        generates: Value,
    ) -> Result<Value, Refusal> {
        let deadline = Timestamp::from_seconds(self.clock.now().seconds + 3_600).to_rfc3339();
        let request = json!({
            "contract_id": contract_id, "contractor": contractor, "uses": uses, "generates": generates, "deadline": deadline,
        });
        self.submit(id("org1", "orchestrator"), "DefineContract", request)
            .await
    }

    /// Data `data_id` leaves `generated_by`, recorded and signed by `who`.
    pub async fn record_data(
        &self,
        who: &Identity,
        data_id: &str,
        kind: &str,
        generated_by: &str,
        derived_from: &[&str],
    ) -> Result<Value, Refusal> {
        let content = format!("content of {data_id}");
        let request = data_request(who, data_id, kind, generated_by, derived_from, &content);
        self.submit(who, "RecordData", request).await
    }

    pub async fn exec(
        &self,
        who: &Identity,
        contract_id: &str,
        data_id: &str,
    ) -> Result<Value, Refusal> {
        self.submit(
            who,
            "ExecContract",
            json!({ "contract_id": contract_id, "data_id": data_id }),
        )
        .await
    }

    /// Run the whole scenario; every step must commit.
    pub async fn smart_city(&self) {
        self.register_org("org1").await.unwrap();
        self.register_org("org2").await.unwrap();
        self.identify_device("car-42", id("org2", "car-42"), "vehicle")
            .await
            .unwrap();
        self.identify_device("traffic-light-1", id("org1", "traffic-light-1"), "actuator")
            .await
            .unwrap();
        self.identify_device(
            "roadside-gateway-1",
            id("org1", "roadside-gateway-1"),
            "gateway",
        )
        .await
        .unwrap();
        self.identify_device("edge-node-1", id("org1", "edge-node-1"), "edge-node")
            .await
            .unwrap();
        self.identify_container("collector", id("org1", "collector"))
            .await
            .unwrap();
        self.identify_container("analyser", id("org1", "analyser"))
            .await
            .unwrap();
        self.place("collector", "roadside-gateway-1").await.unwrap();
        self.place("analyser", "edge-node-1").await.unwrap();
        self.define_contract(
            "collect",
            "collector",
            json!([{ "kind": "vehicle-position", "source": "car-42" }, { "kind": "vehicle-count", "source": "traffic-light-1" }]),
            json!([{ "kind": "junction-summary" }]),
        )
        .await
        .unwrap();
        self.define_contract(
            "optimise",
            "analyser",
            json!([{ "kind": "junction-summary", "source": "collector" }]),
            json!([{ "kind": "timing-plan" }]),
        )
        .await
        .unwrap();
        self.define_contract(
            "apply",
            "traffic-light-1",
            json!([{ "kind": "timing-plan", "source": "analyser" }]),
            json!([{ "kind": "ack" }]),
        )
        .await
        .unwrap();
        let (car, light) = (id("org2", "car-42"), id("org1", "traffic-light-1"));
        let (collector, analyser) = (id("org1", "collector"), id("org1", "analyser"));
        self.record_data(car, "pos-1", "vehicle-position", "car-42", &[])
            .await
            .unwrap();
        self.record_data(light, "count-1", "vehicle-count", "traffic-light-1", &[])
            .await
            .unwrap();
        self.exec(collector, "collect", "pos-1").await.unwrap();
        self.exec(collector, "collect", "count-1").await.unwrap();
        self.record_data(
            collector,
            "summary-1",
            "junction-summary",
            "collector",
            &["pos-1", "count-1"],
        )
        .await
        .unwrap();
        self.exec(id("org1", "orchestrator"), "optimise", "summary-1")
            .await
            .unwrap();
        self.record_data(
            analyser,
            "plan-1",
            "timing-plan",
            "analyser",
            &["summary-1"],
        )
        .await
        .unwrap();
        self.exec(light, "apply", "plan-1").await.unwrap();
        self.record_data(light, "ack-1", "ack", "traffic-light-1", &["plan-1"])
            .await
            .unwrap();
    }
}

/// A device join request whose proof `device` signed for the test channel.
pub fn device_request(device_id: &str, device: &Identity, kind: &str, nonce: &str) -> Value {
    let request = IdentifyDevice::signed(
        device_id,
        device.msp_id,
        kind,
        device.cert_pem,
        nonce,
        CHANNEL,
        |m| device.sign(m),
    )
    .unwrap();
    serde_json::to_value(request).unwrap()
}

/// A RecordData request for `content` whose claim `signer` signed for the test channel.
pub fn data_request(
    signer: &Identity,
    data_id: &str,
    kind: &str,
    generated_by: &str,
    derived_from: &[&str],
    content: &str,
) -> Value {
    let request = RecordData {
        data_id: data_id.to_owned(),
        kind: kind.to_owned(),
        hash: format!("sha256:{}", hex::encode(sha256(content.as_bytes()))),
        size: content.len() as u64,
        location: format!("file:///var/lib/tom/{data_id}"),
        generated_by: generated_by.to_owned(),
        derived_from: derived_from.iter().map(|s| (*s).to_owned()).collect(),
        claim: Default::default(),
    }
    .sign(CHANNEL, &cert_sha256(signer.cert_pem), |m| signer.sign(m))
    .unwrap();
    serde_json::to_value(request).unwrap()
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Hex SHA-256 of a PEM certificate's DER bytes (what device id-proofs bind).
pub fn cert_sha256(pem: &str) -> String {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    hex::encode(sha256(&der))
}
