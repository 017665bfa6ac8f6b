//! Identity proofs and authorisation: certificate chains, validity at the transaction time,
//! id-proof signatures, single-use nonces, roles from the Fabric CA attribute, and malformed
//! arguments. Every refusal names what is wrong and writes nothing.

mod common;

use common::*;
use serde_json::{json, Value};
use tom_contract::memory::SubmitError;
use tom_contract::Timestamp;

fn orchestrator() -> &'static tom_fixtures::Identity {
    id("org1", "orchestrator")
}

/// Submit and assert a refusal that leaves height and records unchanged.
#[track_caller]
fn refused(w: &mut World, result: Result<Value, SubmitError>, status: u16, fragments: &[&str]) {
    let height = w.ledger.height();
    let records = w.record_count();
    assert_rejected(result, status, fragments);
    assert_eq!(
        (w.ledger.height(), w.record_count()),
        (height, records),
        "nothing may be written"
    );
}

#[test]
fn a_forged_id_proof_is_refused() {
    let mut w = World::with_orgs();
    let device = id("org1", "traffic-light-1");
    let mut req = World::device_request("traffic-light-1", device, "actuator", "n-1");
    // Signed by another device's key.
    let other = id("org1", "edge-node-1");
    req["proof"] =
        World::device_request("traffic-light-1", other, "actuator", "n-1")["proof"].clone();
    let r = w.submit(orchestrator(), "IdentifyDevice", req);
    refused(
        &mut w,
        r,
        403,
        &["id-proof for device traffic-light-1 does not verify with the key of"],
    );
}

#[test]
fn a_proof_for_other_request_bytes_is_refused() {
    let mut w = World::with_orgs();
    let device = id("org1", "traffic-light-1");
    let mut req = World::device_request("traffic-light-1", device, "actuator", "n-1");
    req["nonce"] = json!("n-2"); // the proof signed n-1
    let r = w.submit(orchestrator(), "IdentifyDevice", req.clone());
    refused(
        &mut w,
        r,
        403,
        &["signed for another claim: predicate.nonce differs (signed \"n-1\", request \"n-2\")"],
    );
    let mut req = World::device_request("traffic-light-1", device, "actuator", "n-1");
    req["kind"] = json!("sensor");
    let r = w.submit(orchestrator(), "IdentifyDevice", req);
    refused(
        &mut w,
        r,
        403,
        &["signed for another claim: predicate.kind differs"],
    );
    // The same proof presented for another device id.
    let mut req = World::device_request("traffic-light-1", device, "actuator", "n-1");
    req["device_id"] = json!("traffic-light-9");
    let r = w.submit(orchestrator(), "IdentifyDevice", req);
    refused(&mut w, r, 403, &["signed for another claim: subject"]);
}

#[test]
fn a_nonce_is_never_accepted_twice() {
    let mut w = World::with_orgs();
    let device = id("org1", "traffic-light-1");
    w.submit(
        orchestrator(),
        "IdentifyDevice",
        World::device_request("traffic-light-1", device, "actuator", "n-1"),
    )
    .unwrap();
    w.submit(
        orchestrator(),
        "TerminateDevice",
        json!({ "id": "traffic-light-1" }),
    )
    .unwrap();
    // The very same, validly signed request replayed after the device left.
    let r = w.submit(
        orchestrator(),
        "IdentifyDevice",
        World::device_request("traffic-light-1", device, "actuator", "n-1"),
    );
    refused(
        &mut w,
        r,
        403,
        &[
            "nonce \"n-1\" was used already (tx tx0000",
            "never accepted twice",
        ],
    );
    // Nor by another device.
    let other = id("org1", "edge-node-1");
    let r = w.submit(
        orchestrator(),
        "IdentifyDevice",
        World::device_request("edge-node-1", other, "edge-node", "n-1"),
    );
    refused(&mut w, r, 403, &["nonce \"n-1\" was used already"]);
}

#[test]
fn a_device_certificate_from_another_ca_is_refused() {
    let mut w = World::with_orgs();
    let rogue = id("rogue", "device");
    let mut req = World::device_request("rogue-1", rogue, "sensor", "n-1");
    req["org"] = json!("Org1MSP");
    // Re-sign for the claimed org so only the chain can fail.
    let mut resigned: tom_contract::requests::IdentifyDevice =
        serde_json::from_value(req.clone()).unwrap();
    resigned = tom_contract::requests::IdentifyDevice::signed(
        &resigned.device_id,
        "Org1MSP",
        &resigned.kind,
        rogue.cert_pem,
        &resigned.nonce,
        tom_contract::simulation::DEFAULT_CHANNEL,
        |m| rogue.sign(m),
    )
    .unwrap();
    req = serde_json::to_value(resigned).unwrap();
    let r = w.submit(orchestrator(), "IdentifyDevice", req);
    refused(
        &mut w,
        r,
        403,
        &["does not chain to a registered CA of its organisation"],
    );
    // Claiming its own, unregistered org.
    let r = w.submit(
        orchestrator(),
        "IdentifyDevice",
        World::device_request("rogue-1", rogue, "sensor", "n-2"),
    );
    refused(&mut w, r, 404, &["organisation RogueMSP does not exist"]);
    // A certificate of Org2 presented as Org1's.
    let car = id("org2", "car-42");
    let mut req = World::device_request("car-42", car, "vehicle", "n-3");
    req["org"] = json!("Org1MSP");
    let r = w.submit(orchestrator(), "IdentifyDevice", req);
    refused(&mut w, r, 403, &["does not chain to a registered CA"]);
}

#[test]
fn certificates_must_be_valid_at_the_transaction_time() {
    let mut w = World::with_orgs();
    let r = w.submit(
        orchestrator(),
        "IdentifyDevice",
        World::device_request("old", id("org1", "expired-device"), "sensor", "n-1"),
    );
    refused(
        &mut w,
        r,
        403,
        &["expired at 2021-01-01", "transaction time 2026-06-01"],
    );
    let r = w.submit(
        orchestrator(),
        "IdentifyDevice",
        World::device_request("new", id("org1", "future-device"), "sensor", "n-2"),
    );
    refused(&mut w, r, 403, &["is not valid before 2090-01-01"]);
    // The same expired certificate as a creator.
    let r = w.submit(id("org1", "expired-device"), "RecordData", json!({}));
    refused(&mut w, r, 403, &["access denied", "expired at 2021-01-01"]);
}

#[test]
fn a_device_certificate_must_carry_the_device_role() {
    let mut w = World::with_orgs();
    let r = w.submit(
        orchestrator(),
        "IdentifyDevice",
        World::device_request("boss", orchestrator(), "sensor", "n-1"),
    );
    refused(&mut w, r, 403, &["does not carry tom.role=device"]);
}

#[test]
fn roles_come_from_the_fabric_ca_attribute() {
    let mut w = World::with_orgs();
    let device = id("org1", "traffic-light-1");
    let req = World::device_request("traffic-light-1", device, "actuator", "n-1");
    let r = w.submit(device, "IdentifyDevice", req.clone());
    refused(&mut w, r, 403, &["IdentifyDevice: access denied: Org1MSP/traffic-light-1 has role device; this needs role orchestrator"]);
    let r = w.submit(id("org1", "no-role"), "IdentifyDevice", req.clone());
    refused(
        &mut w,
        r,
        403,
        &["Org1MSP/no-role has no tom.role attribute"],
    );
    let r = w.submit(
        id("org1", "auditor"),
        "PlaceContainer",
        json!({ "container_id": "a", "device_id": "b" }),
    );
    refused(
        &mut w,
        r,
        403,
        &["has role auditor; this needs role orchestrator"],
    );
    let r = w.register_org_as(orchestrator(), "org1");
    refused(&mut w, r, 403, &["Org1MSP/orchestrator is not an admin"]);
    w.submit(orchestrator(), "IdentifyDevice", req).unwrap();
    // An auditor records no data; an orchestrator of another organisation neither.
    let r = w.record_data(
        id("org1", "auditor"),
        device,
        "d-1",
        "vehicle-count",
        "traffic-light-1",
        &[],
    );
    refused(
        &mut w,
        r,
        403,
        &[
            "RecordData: access denied",
            "has role auditor; this needs role device or orchestrator",
        ],
    );
    let r = w.record_data(
        id("org2", "orchestrator"),
        device,
        "d-1",
        "vehicle-count",
        "traffic-light-1",
        &[],
    );
    refused(
        &mut w,
        r,
        403,
        &["Org2MSP/orchestrator may not record data of generators of organisation Org1MSP"],
    );
}

#[test]
fn creators_of_unregistered_orgs_or_foreign_cas_cannot_write() {
    let mut w = World::with_orgs();
    let r = w.submit(
        id("rogue", "orchestrator"),
        "PlaceContainer",
        json!({ "container_id": "a", "device_id": "b" }),
    );
    refused(&mut w, r, 403, &["organisation RogueMSP is not registered"]);
    // A rogue certificate presented under Org1MSP's MSP id.
    let rogue = id("rogue", "orchestrator");
    let creator = tom_contract::Creator {
        msp_id: "Org1MSP".into(),
        certificate_pem: rogue.cert_pem.as_bytes().to_vec(),
    };
    let arg = serde_json::to_vec(&json!({ "container_id": "a", "device_id": "b" })).unwrap();
    let height = w.ledger.height();
    let err = w
        .ledger
        .submit(&creator, "tx-rogue", w.now, "PlaceContainer", &[&arg])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not chain to a registered CA"),
        "{err}"
    );
    assert_eq!(w.ledger.height(), height);
}

#[test]
fn only_an_orgs_own_admin_registers_it() {
    let mut w = World::new();
    let o2 = tom_fixtures::org("org2");
    let r = w.submit(
        id("org1", "admin"),
        "RegisterOrg",
        json!({ "msp_id": "Org2MSP", "ca_certificates": [o2.ca_cert_pem] }),
    );
    refused(
        &mut w,
        r,
        403,
        &["an admin of Org1MSP cannot register organisation Org2MSP"],
    );
    // The CA must be the one that issued the admin.
    let r = w.submit(
        id("org1", "admin"),
        "RegisterOrg",
        json!({ "msp_id": "Org1MSP", "ca_certificates": [o2.ca_cert_pem] }),
    );
    refused(
        &mut w,
        r,
        403,
        &["the admin's own certificate must chain to the CA being registered"],
    );
    // A leaf is not a CA.
    let r = w.submit(
        id("org1", "admin"),
        "RegisterOrg",
        json!({ "msp_id": "Org1MSP", "ca_certificates": [id("org1", "admin").cert_pem] }),
    );
    refused(
        &mut w,
        r,
        400,
        &["ca_certificates[0]", "is not a CA certificate"],
    );
    let record = w.register_org("org1", json!({})).unwrap();
    assert_eq!(record["kind"], "ORG");
    let org = w
        .query(id("org2", "auditor"), "GetOrg", json!({ "id": "Org1MSP" }))
        .unwrap();
    assert_eq!(org["msp_id"], "Org1MSP");
}

#[test]
fn malformed_arguments_are_refused_with_the_reason() {
    let mut w = World::with_orgs();
    let o = orchestrator();
    let cases: &[(&[&[u8]], &str)] = &[
        (&[b"not json"], "IdentifyDevice: invalid argument: expected ident"),
        (&[b"{\"device_id\": 7}"], "invalid type: integer `7`, expected a string"),
        (&[b"{}"], "missing field `device_id`"),
        (&[b"{\"device_id\":\"d\",\"org\":\"Org1MSP\",\"kind\":\"k\",\"certificate\":\"c\",\"nonce\":\"n\",\"proof\":{\"payload\":\"\",\"payloadType\":\"t\",\"signatures\":[]},\"colour\":\"red\"}"], "unknown field `colour`"),
        (&[], "expects exactly 1 JSON argument, got 0"),
        (&[b"{}", b"{}"], "expects exactly 1 JSON argument, got 2"),
        (&[b"{\"device_id\":\"bad id!\",\"org\":\"Org1MSP\",\"kind\":\"k\",\"certificate\":\"c\",\"nonce\":\"n\",\"proof\":{\"payload\":\"\",\"payloadType\":\"t\",\"signatures\":[]}}"], "device_id \"bad id!\" contains ' '"),
        (&[b"{\"device_id\":\"d\",\"org\":\"Org1MSP\",\"kind\":\"k\",\"certificate\":\"not a pem\",\"nonce\":\"n\",\"proof\":{\"payload\":\"\",\"payloadType\":\"t\",\"signatures\":[]}}"], "certificate: not a PEM certificate"),
    ];
    for (args, fragment) in cases {
        let r = w.submit_raw(o, "IdentifyDevice", args);
        refused(&mut w, r, 400, &[fragment]);
    }
    let r = w.submit_raw(o, "LaunchMissiles", &[b"{}"]);
    refused(&mut w, r, 400, &["unknown function \"LaunchMissiles\""]);
}

#[test]
fn function_names_follow_the_contract_api_conventions() {
    let mut w = World::new();
    let o1 = tom_fixtures::org("org1");
    let arg =
        serde_json::to_vec(&json!({ "msp_id": "Org1MSP", "ca_certificates": [o1.ca_cert_pem] }))
            .unwrap();
    w.submit_raw(id("org1", "admin"), "TomContract:RegisterOrg", &[&arg])
        .unwrap();
    let metadata = w
        .ledger
        .evaluate(
            &creator(id("org1", "auditor")),
            "q",
            w.now,
            "org.hyperledger.fabric:GetMetadata",
            &[],
        )
        .unwrap();
    let metadata: Value = serde_json::from_slice(&metadata).unwrap();
    let names: Vec<&str> = metadata["contracts"]["TomContract"]["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"IdentifyDevice") && names.contains(&"ExportProv"),
        "{names:?}"
    );
    assert_eq!(names.len(), tom_contract::FUNCTIONS.len());
}

#[test]
fn reads_need_a_valid_certificate_but_no_registered_org() {
    let mut w = World::with_orgs();
    w.identify_device("traffic-light-1", id("org1", "traffic-light-1"), "actuator")
        .unwrap();
    let e = w
        .query(
            id("rogue", "device"),
            "GetEntity",
            json!({ "id": "traffic-light-1" }),
        )
        .unwrap();
    assert_eq!(e["state"], "joined");
    let err = w
        .query(
            id("org1", "expired-device"),
            "GetEntity",
            json!({ "id": "traffic-light-1" }),
        )
        .unwrap_err();
    assert_eq!(err.status(), 403);
    let err = w
        .query(id("org1", "auditor"), "GetEntity", json!({ "id": "nope" }))
        .unwrap_err();
    assert_eq!(err.to_string(), "entity nope does not exist");
    assert_eq!(err.status(), 404);
}

#[test]
fn a_certificate_is_checked_at_the_transaction_time_not_the_wall_clock() {
    let mut w = World::with_orgs();
    // Travel to 2020-06-01: the expired device was valid then, the others not yet.
    w.now = Timestamp::from_seconds(1_590_969_600);
    let height = w.ledger.height();
    let r = w.submit(
        orchestrator(),
        "IdentifyDevice",
        World::device_request("old", id("org1", "expired-device"), "sensor", "n-1"),
    );
    assert_rejected(
        r,
        403,
        &[
            "IdentifyDevice: access denied",
            "CN=orchestrator is not valid before 2024-01-01",
        ],
    );
    assert_eq!(w.ledger.height(), height);
}
