//! The forgeries and boundary crossings an attacker tried against earlier versions, each
//! refused by the contract itself with nothing written:
//!
//! * a generator's data signature replayed onto a new record (other id, kind, inputs, location,
//!   ledger) by a device of another organisation;
//! * a container joined with a workload certificate whose key it never proved, from another
//!   organisation's orchestrator, with a certificate already bound to a device;
//! * an orchestrator of one organisation placing and terminating another organisation's
//!   entities without that organisation's consent on the ledger.

mod common;

use common::*;
use serde_json::{json, Value};

/// Assert a refusal with `status` whose message contains every fragment, and that nothing was
/// written.
fn refused(
    w: &mut World,
    attempt: impl FnOnce(&mut World) -> Value,
    status: u16,
    fragments: &[&str],
) {
    let height = w.ledger.height();
    let records = w.record_count();
    let request = attempt(w);
    let (function, arg) = (
        request["function"].as_str().unwrap().to_owned(),
        request["arg"].clone(),
    );
    let who = id(
        request["org"].as_str().unwrap(),
        request["who"].as_str().unwrap(),
    );
    let r = w.submit(who, &function, arg);
    assert_rejected(r, status, fragments);
    assert_eq!(
        (w.ledger.height(), w.record_count()),
        (height, records),
        "nothing may be written"
    );
}

fn call(org: &str, who: &str, function: &str, arg: Value) -> Value {
    json!({ "org": org, "who": who, "function": function, "arg": arg })
}

fn city_with_a_reading() -> (World, Value) {
    let mut w = World::with_orgs();
    w.identify_device("traffic-light-1", id("org1", "traffic-light-1"), "actuator")
        .unwrap();
    w.identify_device("car-42", id("org2", "car-42"), "vehicle")
        .unwrap();
    let light = id("org1", "traffic-light-1");
    let reading = World::data_request(light, "count-1", "vehicle-count", "traffic-light-1", &[]);
    w.submit(light, "RecordData", reading.clone()).unwrap();
    (w, reading)
}

#[test]
fn a_data_signature_cannot_be_replayed_onto_another_claim() {
    let (mut w, reading) = city_with_a_reading();
    // The first organisation's signed claim, re-posted by a device of the second organisation
    // under a new id, as an alarm with invented inputs and location.
    let mut forged = reading.clone();
    forged["data_id"] = json!("alarm-1");
    forged["kind"] = json!("alarm");
    forged["location"] = json!("file:///elsewhere");
    refused(
        &mut w,
        |_| call("org2", "car-42", "RecordData", forged.clone()),
        403,
        &["Org2MSP/car-42 is not traffic-light-1's identity"],
    );
    // Even the generator itself cannot move its signature to another claim: every field is
    // bound, and the refusal names the first one that differs.
    for (field, value, differs) in [
        ("data_id", json!("count-2"), "subject"),
        ("kind", json!("alarm"), "predicate.kind differs"),
        ("size", json!(999), "predicate.size differs"),
        ("location", json!("file:///x"), "predicate.location differs"),
        (
            "derived_from",
            json!(["count-1"]),
            "predicate.derived_from differs",
        ),
    ] {
        let mut moved = reading.clone();
        moved[field] = value;
        if field != "data_id" {
            moved["data_id"] = json!("count-9");
        }
        refused(
            &mut w,
            |_| call("org1", "traffic-light-1", "RecordData", moved.clone()),
            403,
            &["was signed for another claim", differs],
        );
    }
    // The hash is bound too (the subject's digest).
    let mut moved = reading.clone();
    moved["data_id"] = json!("count-9");
    moved["hash"] = json!(sha256(b"other bytes"));
    refused(
        &mut w,
        |_| call("org1", "traffic-light-1", "RecordData", moved.clone()),
        403,
        &["was signed for another claim: subject"],
    );
}

#[test]
fn a_claim_signed_for_another_ledger_is_refused() {
    let mut w = World::with_orgs();
    w.identify_device("traffic-light-1", id("org1", "traffic-light-1"), "actuator")
        .unwrap();
    let light = id("org1", "traffic-light-1");
    let bytes = b"payload";
    let request = tom_contract::requests::RecordData {
        data_id: "count-1".into(),
        kind: "vehicle-count".into(),
        hash: sha256(bytes),
        size: bytes.len() as u64,
        location: "file:///count-1".into(),
        generated_by: "traffic-light-1".into(),
        derived_from: vec![],
        claim: Default::default(),
    }
    .sign("another-channel", &light.cert_sha256(), |m| light.sign(m))
    .unwrap();
    let request = serde_json::to_value(request).unwrap();
    refused(
        &mut w,
        |_| call("org1", "traffic-light-1", "RecordData", request.clone()),
        403,
        &["predicate.ledger differs (signed \"another-channel\", request \"tom\")"],
    );
}

#[test]
fn the_submitter_is_the_generator_or_an_orchestrator_of_its_organisation() {
    let (mut w, _) = city_with_a_reading();
    let light = id("org1", "traffic-light-1");
    // Org1's orchestrator may record for Org1's generator; Org2's may not.
    let by_own = World::data_request(light, "count-2", "vehicle-count", "traffic-light-1", &[]);
    w.submit(id("org1", "orchestrator"), "RecordData", by_own)
        .unwrap();
    let by_other = World::data_request(light, "count-3", "vehicle-count", "traffic-light-1", &[]);
    refused(
        &mut w,
        |_| call("org2", "orchestrator", "RecordData", by_other.clone()),
        403,
        &["Org2MSP/orchestrator may not record data of generators of organisation Org1MSP"],
    );
    // A device may not record in another device's name, even with that device's valid claim.
    refused(
        &mut w,
        |_| call("org1", "edge-node-1", "RecordData", by_other.clone()),
        403,
        &["Org1MSP/edge-node-1 is not traffic-light-1's identity"],
    );
}

#[test]
fn a_workload_certificate_needs_proof_of_possession() {
    let mut w = World::with_orgs();
    // A certificate without a proof.
    let mut bare = World::container_request("analyser", None);
    bare["certificate"] = json!(id("org1", "analyser").cert_pem);
    refused(
        &mut w,
        |_| call("org1", "orchestrator", "IdentifyContainer", bare.clone()),
        400,
        &["a workload certificate needs its proof of possession"],
    );
    // A proof signed by another key than the certificate's.
    let mut wrong = World::container_request("analyser", Some(id("org1", "analyser")));
    wrong["proof"] =
        World::container_request("analyser", Some(id("org1", "collector")))["proof"].clone();
    refused(
        &mut w,
        |_| call("org1", "orchestrator", "IdentifyContainer", wrong.clone()),
        403,
        &["id-proof for container analyser does not verify with the key of"],
    );
    // Another organisation's orchestrator, for another organisation's device certificate.
    let foreign =
        World::container_request_of("Org1MSP", "spy", Some(id("org2", "car-42")), "n-spy");
    refused(
        &mut w,
        |_| call("org2", "orchestrator", "IdentifyContainer", foreign.clone()),
        403,
        &["Org2MSP/orchestrator may not identify containers of organisation Org1MSP"],
    );
    refused(
        &mut w,
        |_| call("org1", "orchestrator", "IdentifyContainer", foreign.clone()),
        403,
        &["does not chain to a registered CA of its organisation"],
    );
}

#[test]
fn a_certificate_identifies_one_entity_only() {
    let mut w = World::with_orgs();
    let light = id("org1", "traffic-light-1");
    w.identify_device("traffic-light-1", light, "actuator")
        .unwrap();
    // The device's certificate, with a valid proof by its key, offered for a container.
    let container = World::container_request_of("Org1MSP", "impostor", Some(light), "n-imp");
    refused(
        &mut w,
        |_| {
            call(
                "org1",
                "orchestrator",
                "IdentifyContainer",
                container.clone(),
            )
        },
        409,
        &["identifies traffic-light-1 already and cannot identify impostor"],
    );
    // Nor for a second device.
    let second = World::device_request("traffic-light-2", light, "actuator", "n-2");
    refused(
        &mut w,
        |_| call("org1", "orchestrator", "IdentifyDevice", second.clone()),
        409,
        &["identifies traffic-light-1 already"],
    );
    // The same device rejoining with its own certificate is fine.
    w.submit(
        id("org1", "orchestrator"),
        "TerminateDevice",
        json!({ "id": "traffic-light-1" }),
    )
    .unwrap();
    w.identify_device("traffic-light-1", light, "actuator")
        .unwrap();
}

fn two_org_world(org2_policy: Value) -> World {
    let mut w = World::new();
    w.register_org("org1", json!({})).unwrap();
    w.register_org("org2", org2_policy).unwrap();
    w.identify_device("car-42", id("org2", "car-42"), "vehicle")
        .unwrap();
    w.identify_container_as(
        id("org2", "orchestrator"),
        "Org2MSP",
        "fleet-agent",
        Some(id("org2", "tractor-3")),
    )
    .unwrap();
    w
}

#[test]
fn another_organisations_entities_need_its_consent() {
    let mut w = two_org_world(json!({}));
    let place = json!({ "container_id": "fleet-agent", "device_id": "car-42" });
    refused(
        &mut w,
        |_| call("org1", "orchestrator", "PlaceContainer", place.clone()),
        403,
        &["Org1MSP/orchestrator may not place containers of organisation Org2MSP"],
    );
    for (function, what) in [
        ("TerminateContainer", "terminate containers"),
        ("TerminateDevice", "terminate devices"),
    ] {
        let target = if function == "TerminateDevice" {
            "car-42"
        } else {
            "fleet-agent"
        };
        refused(
            &mut w,
            |_| call("org1", "orchestrator", function, json!({ "id": target })),
            403,
            &[&format!(
                "Org1MSP/orchestrator may not {what} of organisation Org2MSP"
            )],
        );
    }
    // Org2 places its own container on its own device.
    w.submit(id("org2", "orchestrator"), "PlaceContainer", place)
        .unwrap();
}

#[test]
fn consent_on_the_ledger_lets_another_organisation_act() {
    let mut w = two_org_world(json!({ "orchestrators": ["Org1MSP"] }));
    w.submit(
        id("org1", "orchestrator"),
        "PlaceContainer",
        json!({ "container_id": "fleet-agent", "device_id": "car-42" }),
    )
    .unwrap();
    w.submit(
        id("org1", "orchestrator"),
        "TerminateContainer",
        json!({ "id": "fleet-agent" }),
    )
    .unwrap();
    // Hosting is the device owner's consent: Org1's container on Org2's car needs it.
    w.identify_container("collector", Some(id("org1", "collector")))
        .unwrap();
    let place = json!({ "container_id": "collector", "device_id": "car-42" });
    refused(
        &mut w,
        |_| call("org1", "orchestrator", "PlaceContainer", place.clone()),
        403,
        &["device car-42 of Org2MSP does not host containers of Org1MSP"],
    );
}

#[test]
fn data_reaches_another_organisation_only_if_shared() {
    let mut w = World::new();
    w.register_org("org1", json!({})).unwrap();
    w.register_org("org2", json!({})).unwrap();
    w.identify_device("car-42", id("org2", "car-42"), "vehicle")
        .unwrap();
    w.identify_container("collector", Some(id("org1", "collector")))
        .unwrap();
    w.identify_device("edge-node-1", id("org1", "edge-node-1"), "edge-node")
        .unwrap();
    w.place("collector", "edge-node-1").unwrap();
    let car = id("org2", "car-42");
    w.record_data(car, car, "pos-1", "vehicle-position", "car-42", &[])
        .unwrap();
    w.define_contract(
        "collect",
        "collector",
        json!([{ "kind": "vehicle-position" }]),
        json!([{ "kind": "summary" }]),
    )
    .unwrap();
    let exec = json!({ "contract_id": "collect", "data_id": "pos-1" });
    refused(
        &mut w,
        |_| call("org1", "orchestrator", "ExecContract", exec.clone()),
        403,
        &["pos-1 belongs to Org2MSP, which does not share data with Org1MSP"],
    );
    let collector = id("org1", "collector");
    let derived = World::data_request(collector, "summary-1", "summary", "collector", &["pos-1"]);
    refused(
        &mut w,
        |_| call("org1", "collector", "RecordData", derived.clone()),
        403,
        &["pos-1 belongs to Org2MSP, which does not share data with Org1MSP"],
    );
    // Org2 consents; both go through.
    w.register_org("org2", json!({ "shares_data_with": ["Org1MSP"] }))
        .unwrap();
    w.submit(id("org1", "orchestrator"), "ExecContract", exec)
        .unwrap();
    w.submit(collector, "RecordData", derived).unwrap();
}
