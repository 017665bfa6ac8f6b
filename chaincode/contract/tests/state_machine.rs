//! Every transition of the paper's state machine (Table II), allowed and refused, checked at
//! the chaincode on a Fabric-faithful ledger. A refusal must name the entity, its state and the
//! failed guard, and must write nothing.

mod common;

use common::*;
use serde_json::json;

fn orchestrator() -> &'static tom_fixtures::Identity {
    id("org1", "orchestrator")
}

/// A world with two joined devices: a sensor (traffic-light-1) and a host (edge-node-1).
fn world_with_devices() -> World {
    let mut w = World::with_orgs();
    w.identify_device("traffic-light-1", id("org1", "traffic-light-1"), "actuator")
        .unwrap();
    w.identify_device("edge-node-1", id("org1", "edge-node-1"), "edge-node")
        .unwrap();
    w
}

/// Devices plus the analyser container placed on edge-node-1 under contract k1, which uses
/// vehicle counts from traffic-light-1 and must generate a timing plan.
fn world_with_activity() -> World {
    let mut w = world_with_devices();
    w.identify_container("analyser", Some(id("org1", "analyser")))
        .unwrap();
    w.place("analyser", "edge-node-1").unwrap();
    w.define_contract(
        "k1",
        "analyser",
        json!([{ "kind": "vehicle-count", "source": "traffic-light-1" }]),
        json!([{ "kind": "timing-plan" }]),
    )
    .unwrap();
    w
}

/// Assert a refusal changed nothing: same height, same records.
#[track_caller]
fn assert_refused_without_writes(
    w: &mut World,
    result: Result<serde_json::Value, tom_contract::memory::SubmitError>,
    status: u16,
    fragments: &[&str],
) {
    let height = w.ledger.height();
    let records = w.record_count();
    assert_rejected(result, status, fragments);
    assert_eq!(
        w.ledger.height(),
        height,
        "a refused transaction must not commit a block"
    );
    assert_eq!(
        w.record_count(),
        records,
        "a refused transaction must not write a record"
    );
}

// --- device join / leave ----------------------------------------------------------------------

#[test]
fn device_joins_with_a_prov_id_create_record_and_event() {
    let mut w = World::with_orgs();
    let record = w
        .identify_device("car-42", id("org2", "car-42"), "vehicle")
        .unwrap();
    assert_eq!(record["kind"], "PROV-ID-create");
    assert_eq!(record["subjects"], json!(["car-42"]));
    // Identified by its own organisation's orchestrator.
    assert_eq!(record["agent"]["id"], "Org2MSP/orchestrator");
    assert_eq!(record["body"]["entity_type"], "device");
    let device = w.entity("car-42");
    assert_eq!(device["type"], "device");
    assert_eq!(device["state"], "joined");
    assert_eq!(device["org"], "Org2MSP");
    assert_eq!(
        device["certificate"]["sha256"],
        cert_sha256(id("org2", "car-42").cert_pem)
    );
    let last = w.ledger.events().last().unwrap();
    assert_eq!(last.event.name, "PROV-ID-create");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&last.event.payload).unwrap(),
        record
    );
}

#[test]
fn device_cannot_join_twice() {
    let mut w = world_with_devices();
    let again = World::device_request(
        "edge-node-1",
        id("org1", "edge-node-1"),
        "edge-node",
        "another-nonce",
    );
    let r = w.submit(orchestrator(), "IdentifyDevice", again);
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &[
            "join device refused",
            "device edge-node-1 is joined (since tx",
        ],
    );
}

#[test]
fn device_leave_requires_joined_device() {
    let mut w = World::with_orgs();
    let r = w.submit(orchestrator(), "TerminateDevice", json!({ "id": "ghost" }));
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &[
            "leave device refused",
            "guard joined(device) failed",
            "device ghost is unknown (never joined)",
        ],
    );
}

#[test]
fn device_leaves_once_with_a_prov_id_delete_record() {
    let mut w = world_with_devices();
    let record = w
        .submit(
            orchestrator(),
            "TerminateDevice",
            json!({ "id": "edge-node-1", "reason": "decommissioned" }),
        )
        .unwrap();
    assert_eq!(record["kind"], "PROV-ID-delete");
    assert_eq!(record["body"]["reason"], "decommissioned");
    let device = w.entity("edge-node-1");
    assert_eq!(device["state"], "left");
    assert_eq!(device["left"]["reason"], "decommissioned");
    assert_eq!(
        w.ledger.events().last().unwrap().event.name,
        "PROV-ID-delete"
    );
    let r = w.submit(
        orchestrator(),
        "TerminateDevice",
        json!({ "id": "edge-node-1" }),
    );
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &[
            "guard joined(device) failed",
            "device edge-node-1 is left (since tx",
        ],
    );
}

#[test]
fn device_that_left_may_rejoin_with_a_fresh_proof() {
    let mut w = world_with_devices();
    w.submit(
        orchestrator(),
        "TerminateDevice",
        json!({ "id": "edge-node-1" }),
    )
    .unwrap();
    w.identify_device("edge-node-1", id("org1", "edge-node-1"), "edge-node")
        .unwrap();
    assert_eq!(w.entity("edge-node-1")["state"], "joined");
    let history = w
        .query(
            id("org1", "auditor"),
            "GetHistory",
            json!({ "id": "edge-node-1" }),
        )
        .unwrap();
    let states: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["value"]["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["joined", "left", "joined"]);
}

#[test]
fn device_cannot_leave_while_containers_are_placed_on_it() {
    let mut w = world_with_activity();
    w.identify_container("collector", Some(id("org1", "collector")))
        .unwrap();
    w.place("collector", "edge-node-1").unwrap();
    let r = w.submit(
        orchestrator(),
        "TerminateDevice",
        json!({ "id": "edge-node-1" }),
    );
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["device edge-node-1 still hosts container(s) analyser, collector"],
    );
}

// --- container join / leave -------------------------------------------------------------------

#[test]
fn container_joins_and_leaves() {
    let mut w = World::with_orgs();
    let record = w.identify_container("analyser", None).unwrap();
    assert_eq!(record["kind"], "PROV-ID-create");
    assert_eq!(record["body"]["entity_type"], "container");
    let r = w.identify_container("analyser", None);
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["join container refused", "container analyser is joined"],
    );
    let record = w
        .submit(
            orchestrator(),
            "TerminateContainer",
            json!({ "id": "analyser" }),
        )
        .unwrap();
    assert_eq!(record["kind"], "PROV-ID-delete");
    assert_eq!(w.entity("analyser")["state"], "left");
    let r = w.submit(
        orchestrator(),
        "TerminateContainer",
        json!({ "id": "analyser" }),
    );
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &[
            "leave container refused",
            "guard joined(container) failed",
            "container analyser is left",
        ],
    );
}

#[test]
fn container_leave_requires_joined_container() {
    let mut w = World::with_orgs();
    let r = w.submit(
        orchestrator(),
        "TerminateContainer",
        json!({ "id": "nobody" }),
    );
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &[
            "guard joined(container) failed",
            "container nobody is unknown (never joined)",
        ],
    );
}

#[test]
fn ids_are_one_namespace_across_entity_types() {
    let mut w = world_with_devices();
    let r = w.identify_container("edge-node-1", None);
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &[
            "entity edge-node-1 already exists",
            "a device that is joined",
        ],
    );
    let r = w.submit(
        orchestrator(),
        "TerminateContainer",
        json!({ "id": "edge-node-1" }),
    );
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["edge-node-1 is a device, not a container"],
    );
}

#[test]
fn container_digest_must_be_a_sha256_digest() {
    let mut w = World::with_orgs();
    let mut req = World::container_request("analyser", None);
    req["digest"] = json!("sha256:XYZ");
    let r = w.submit(orchestrator(), "IdentifyContainer", req);
    assert_refused_without_writes(
        &mut w,
        r,
        400,
        &["digest \"sha256:XYZ\" is not of the form sha256:<64 lowercase hex digits>"],
    );
}

#[test]
fn org_policy_can_require_a_publisher_signature_over_the_digest() {
    let mut w = World::new();
    let policy = json!({ "require_image_signature": true, "publishers": { "city-publisher": id("org1", "publisher").cert_pem } });
    w.register_org("org1", policy).unwrap();
    let req = World::container_request("analyser", None);
    let r = w.submit(orchestrator(), "IdentifyContainer", req.clone());
    assert_refused_without_writes(
        &mut w,
        r,
        403,
        &["organisation Org1MSP requires a publisher signature over the image digest"],
    );

    let mut forged = req.clone();
    forged["publisher_signature"] = json!({ "publisher": "city-publisher", "signature": b64(&id("org1", "analyser").sign(req["digest"].as_str().unwrap().as_bytes())) });
    let r = w.submit(orchestrator(), "IdentifyContainer", forged);
    assert_refused_without_writes(
        &mut w,
        r,
        403,
        &[
            "publisher city-publisher's signature over sha256:",
            "does not verify",
        ],
    );

    let mut unknown = req.clone();
    unknown["publisher_signature"] = json!({ "publisher": "someone-else", "signature": b64(b"x") });
    let r = w.submit(orchestrator(), "IdentifyContainer", unknown);
    assert_refused_without_writes(
        &mut w,
        r,
        403,
        &["publisher \"someone-else\" is not trusted by organisation Org1MSP"],
    );

    let mut signed = req.clone();
    signed["publisher_signature"] = World::publisher_signature(req["digest"].as_str().unwrap());
    w.submit(orchestrator(), "IdentifyContainer", signed)
        .unwrap();
    assert_eq!(w.entity("analyser")["publisher"], "city-publisher");
}

// --- placement --------------------------------------------------------------------------------

#[test]
fn placement_is_an_orchestrate_record_of_deployed_and_location() {
    let mut w = world_with_devices();
    w.identify_container("analyser", None).unwrap();
    let record = w.place("analyser", "edge-node-1").unwrap();
    assert_eq!(record["kind"], "ORCHESTRATE");
    assert_eq!(
        record["body"],
        json!({ "what": "place", "deployed": "analyser", "location": "edge-node-1", "previous_location": null })
    );
    let c = w.entity("analyser");
    assert_eq!(c["placement"]["device"], "edge-node-1");
    assert_eq!(c["placement"]["status"], "authorised");
}

#[test]
fn placement_requires_both_joined_and_lists_every_failure() {
    let mut w = World::with_orgs();
    let r = w.place("nothing", "nowhere");
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &[
            "place container refused",
            "container nothing is unknown (never joined)",
            "device nowhere is unknown (never joined)",
        ],
    );
}

#[test]
fn placement_on_a_device_that_left_is_refused() {
    let mut w = world_with_devices();
    w.identify_container("analyser", None).unwrap();
    w.submit(
        orchestrator(),
        "TerminateDevice",
        json!({ "id": "edge-node-1" }),
    )
    .unwrap();
    let r = w.place("analyser", "edge-node-1");
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["guard joined(device) failed: device edge-node-1 is left"],
    );
}

#[test]
fn a_container_is_on_at_most_one_device_and_moving_it_is_recorded() {
    let mut w = world_with_activity();
    let r = w.place("analyser", "edge-node-1");
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["container analyser is placed on device edge-node-1 already"],
    );
    w.identify_device(
        "roadside-gateway-1",
        id("org1", "roadside-gateway-1"),
        "gateway",
    )
    .unwrap();
    let record = w.place("analyser", "roadside-gateway-1").unwrap();
    assert_eq!(record["body"]["previous_location"], "edge-node-1");
    // The old host is free to leave; the new one is not.
    w.submit(
        orchestrator(),
        "TerminateDevice",
        json!({ "id": "edge-node-1" }),
    )
    .unwrap();
    let r = w.submit(
        orchestrator(),
        "TerminateDevice",
        json!({ "id": "roadside-gateway-1" }),
    );
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["device roadside-gateway-1 still hosts container(s) analyser"],
    );
}

#[test]
fn container_leaving_frees_its_device() {
    let mut w = world_with_activity();
    let record = w
        .submit(
            orchestrator(),
            "TerminateContainer",
            json!({ "id": "analyser", "reason": "update" }),
        )
        .unwrap();
    assert_eq!(record["body"]["location"], "edge-node-1");
    w.submit(
        orchestrator(),
        "TerminateDevice",
        json!({ "id": "edge-node-1" }),
    )
    .unwrap();
}

#[test]
fn placement_outcomes_are_recorded_and_a_failure_removes_the_placement() {
    let mut w = world_with_devices();
    w.identify_container("analyser", None).unwrap();
    let place_tx = w.place("analyser", "edge-node-1").unwrap()["tx_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = w.submit(orchestrator(), "RecordOutcome", json!({ "container_id": "analyser", "action": "place", "authorising_tx": "tx-other", "outcome": "running" }));
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["placement tx tx-other is not container analyser's current placement"],
    );
    let r = w.submit(orchestrator(), "RecordOutcome", json!({ "container_id": "analyser", "action": "place", "authorising_tx": place_tx, "outcome": "exploded" }));
    assert_refused_without_writes(
        &mut w,
        r,
        400,
        &["expected place running|failed or terminate removed|failed"],
    );

    let record = w
        .submit(orchestrator(), "RecordOutcome", json!({ "container_id": "analyser", "action": "place", "authorising_tx": place_tx, "outcome": "failed", "detail": "No such image: tom/analyser" }))
        .unwrap();
    assert_eq!(record["kind"], "OUTCOME");
    let c = w.entity("analyser");
    assert_eq!(
        c["placement"],
        json!(null),
        "the ledger must not claim a failed container is placed"
    );
    assert_eq!(
        c["last_failed_placement"]["detail"],
        "No such image: tom/analyser"
    );
    w.submit(
        orchestrator(),
        "TerminateDevice",
        json!({ "id": "edge-node-1" }),
    )
    .unwrap();

    // A running report marks the placement running, once.
    w.identify_device("edge-node-2", id("org1", "roadside-gateway-1"), "edge-node")
        .unwrap();
    let place_tx = w.place("analyser", "edge-node-2").unwrap()["tx_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let running = json!({ "container_id": "analyser", "action": "place", "authorising_tx": place_tx, "outcome": "running" });
    w.submit(orchestrator(), "RecordOutcome", running.clone())
        .unwrap();
    assert_eq!(w.entity("analyser")["placement"]["status"], "running");
    let r = w.submit(orchestrator(), "RecordOutcome", running);
    assert_refused_without_writes(&mut w, r, 409, &["was reported running already"]);

    // Removal outcome refers to the leave transaction.
    let leave_tx = w
        .submit(
            orchestrator(),
            "TerminateContainer",
            json!({ "id": "analyser" }),
        )
        .unwrap()["tx_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = w.submit(orchestrator(), "RecordOutcome", json!({ "container_id": "analyser", "action": "terminate", "authorising_tx": place_tx, "outcome": "removed" }));
    assert_refused_without_writes(&mut w, r, 409, &["did not leave in tx"]);
    w.submit(orchestrator(), "RecordOutcome", json!({ "container_id": "analyser", "action": "terminate", "authorising_tx": leave_tx, "outcome": "removed" })).unwrap();
}

#[test]
fn drift_is_recorded_with_what_differs() {
    let mut w = World::with_orgs();
    let record = w
        .submit(orchestrator(), "RecordDrift", json!({ "service": "tom-analyser", "container_id": "analyser", "description": "service removed behind TOM's back", "action_taken": "none" }))
        .unwrap();
    assert_eq!(record["kind"], "DRIFT");
    assert_eq!(
        record["body"]["description"],
        "service removed behind TOM's back"
    );
    assert_eq!(w.ledger.events().last().unwrap().event.name, "DRIFT");
}

// --- data leaves (PROV-DATA) ------------------------------------------------------------------

#[test]
fn data_leaves_a_sensor_with_a_signed_hash() {
    let mut w = world_with_devices();
    let light = id("org1", "traffic-light-1");
    let record = w
        .record_data(
            light,
            light,
            "count-1",
            "vehicle-count",
            "traffic-light-1",
            &[],
        )
        .unwrap();
    assert_eq!(record["kind"], "PROV-DATA");
    let data = w.entity("count-1");
    assert_eq!(data["type"], "data");
    assert_eq!(data["generated_by"], "traffic-light-1");
    assert_eq!(data["generator_type"], "device");
    assert_eq!(data["hash"], sha256(b"payload of count-1"));
    assert_eq!(
        data["signer_certificate_sha256"],
        cert_sha256(light.cert_pem)
    );
}

#[test]
fn data_from_an_unjoined_generator_is_refused() {
    let mut w = World::with_orgs();
    let light = id("org1", "traffic-light-1");
    let r = w.record_data(
        light,
        light,
        "count-1",
        "vehicle-count",
        "traffic-light-1",
        &[],
    );
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &[
            "leave data refused",
            "traffic-light-1 is unknown (never joined)",
        ],
    );
}

#[test]
fn data_signed_by_another_key_is_refused() {
    let mut w = world_with_devices();
    let light = id("org1", "traffic-light-1");
    let r = w.record_data(
        light,
        id("org1", "edge-node-1"),
        "count-1",
        "vehicle-count",
        "traffic-light-1",
        &[],
    );
    assert_refused_without_writes(
        &mut w,
        r,
        403,
        &[
            "claim for data count-1 is not signed by generator traffic-light-1",
            "does not verify with the signer's key",
        ],
    );
}

#[test]
fn data_cannot_be_derived_from_data_that_never_left() {
    let mut w = world_with_devices();
    let light = id("org1", "traffic-light-1");
    let r = w.record_data(
        light,
        light,
        "summary",
        "vehicle-count",
        "traffic-light-1",
        &["phantom-input"],
    );
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["guard left(data) failed: data phantom-input has no PROV-DATA record"],
    );
}

#[test]
fn data_ids_are_never_reused() {
    let mut w = world_with_devices();
    let light = id("org1", "traffic-light-1");
    w.record_data(
        light,
        light,
        "count-1",
        "vehicle-count",
        "traffic-light-1",
        &[],
    )
    .unwrap();
    let r = w.record_data(
        light,
        light,
        "count-1",
        "vehicle-count",
        "traffic-light-1",
        &[],
    );
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["entity count-1 already exists", "data that left at tx"],
    );
}

#[test]
fn data_from_an_activity_names_the_device_it_ran_on() {
    let mut w = world_with_activity();
    let analyser = id("org1", "analyser");
    w.record_data(analyser, analyser, "plan-1", "timing-plan", "analyser", &[])
        .unwrap();
    let data = w.entity("plan-1");
    assert_eq!(data["generator_type"], "container");
    assert_eq!(data["host_device"], "edge-node-1");
}

#[test]
fn an_unplaced_activity_cannot_generate_data() {
    let mut w = world_with_devices();
    w.identify_container("analyser", Some(id("org1", "analyser")))
        .unwrap();
    w.identify_container("keyless", None).unwrap();
    w.place("keyless", "edge-node-1").unwrap();
    let analyser = id("org1", "analyser");
    let r = w.record_data(analyser, analyser, "plan-1", "timing-plan", "analyser", &[]);
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["guard placed(container) failed: container analyser is joined but not placed"],
    );
    let r = w.record_data(analyser, analyser, "plan-2", "timing-plan", "keyless", &[]);
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["container keyless has no workload certificate"],
    );
}

// --- data joins an activity (EXEC, PROV-ORCH) -------------------------------------------------

fn world_with_reading() -> World {
    let mut w = world_with_activity();
    let light = id("org1", "traffic-light-1");
    w.record_data(
        light,
        light,
        "count-1",
        "vehicle-count",
        "traffic-light-1",
        &[],
    )
    .unwrap();
    w
}

#[test]
fn exec_writes_prov_orch_when_data_left_and_the_activity_holds_a_credential() {
    let mut w = world_with_reading();
    let record = w.exec(orchestrator(), "k1", "count-1").unwrap();
    assert_eq!(record["kind"], "PROV-ORCH");
    assert_eq!(
        record["body"],
        json!({ "what": "exec_contract", "data": "count-1", "activity": "analyser", "contract": "k1", "host_device": "edge-node-1" })
    );
    assert_eq!(w.ledger.events().last().unwrap().event.name, "PROV-ORCH");
    // The same data joins the same activity under the same contract once.
    let r = w.exec(orchestrator(), "k1", "count-1");
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["data count-1 has joined its activity under contract k1 already"],
    );
}

#[test]
fn exec_requires_left_data() {
    let mut w = world_with_activity();
    let r = w.exec(orchestrator(), "k1", "count-404");
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &[
            "join data refused",
            "guard left(data) failed: data count-404 has no PROV-DATA record",
        ],
    );
}

#[test]
fn exec_requires_a_joined_and_placed_contractor() {
    let mut w = world_with_reading();
    w.submit(
        orchestrator(),
        "TerminateContainer",
        json!({ "id": "analyser" }),
    )
    .unwrap();
    let r = w.exec(orchestrator(), "k1", "count-1");
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["guard joined(container) failed: container analyser is left"],
    );

    let mut w = world_with_devices();
    w.identify_container("analyser", None).unwrap();
    w.define_contract(
        "k1",
        "analyser",
        json!([{ "kind": "vehicle-count" }]),
        json!([]),
    )
    .unwrap();
    let light = id("org1", "traffic-light-1");
    w.record_data(
        light,
        light,
        "count-1",
        "vehicle-count",
        "traffic-light-1",
        &[],
    )
    .unwrap();
    let r = w.exec(orchestrator(), "k1", "count-1");
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["guard placed(container) failed: container analyser is joined but not placed"],
    );
}

#[test]
fn exec_requires_a_credential_for_the_kind_and_source() {
    let mut w = world_with_reading();
    let edge = id("org1", "edge-node-1");
    w.record_data(edge, edge, "count-2", "vehicle-count", "edge-node-1", &[])
        .unwrap();
    let r = w.exec(orchestrator(), "k1", "count-2");
    assert_refused_without_writes(&mut w, r, 409, &["contract k1 grants activity analyser no use of data count-2 (kind vehicle-count, source edge-node-1)"]);
    let light = id("org1", "traffic-light-1");
    w.record_data(
        light,
        light,
        "temp-1",
        "temperature",
        "traffic-light-1",
        &[],
    )
    .unwrap();
    let r = w.exec(orchestrator(), "k1", "temp-1");
    assert_refused_without_writes(&mut w, r, 409, &["no use of data temp-1 (kind temperature"]);
    let r = w.exec(orchestrator(), "k404", "count-1");
    assert_refused_without_writes(&mut w, r, 404, &["contract k404 does not exist"]);
}

#[test]
fn exec_after_the_deadline_is_refused_as_violated() {
    let mut w = world_with_reading();
    w.tick(3_601);
    let r = w.exec(orchestrator(), "k1", "count-1");
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["guard active(contract) failed: contract k1 is violated (deadline"],
    );
}

#[test]
fn exec_by_the_activity_itself_or_the_orchestrator_only() {
    let mut w = world_with_reading();
    let r = w.exec(id("org1", "collector"), "k1", "count-1");
    assert_refused_without_writes(
        &mut w,
        r,
        403,
        &["Org1MSP/collector is not activity analyser's identity"],
    );
    let r = w.exec(id("org1", "auditor"), "k1", "count-1");
    assert_refused_without_writes(
        &mut w,
        r,
        403,
        &["has role auditor; this needs role orchestrator or device"],
    );
    let record = w.exec(id("org1", "analyser"), "k1", "count-1").unwrap();
    assert_eq!(record["agent"]["id"], "Org1MSP/analyser");
}

// --- contracts --------------------------------------------------------------------------------

#[test]
fn contract_is_fulfilled_when_every_obligation_is_generated() {
    let mut w = world_with_reading();
    w.define_contract(
        "k2",
        "analyser",
        json!([]),
        json!([{ "kind": "timing-plan" }, { "kind": "report" }]),
    )
    .unwrap();
    w.exec(orchestrator(), "k1", "count-1").unwrap();
    let analyser = id("org1", "analyser");
    let record = w
        .record_data(
            analyser,
            analyser,
            "plan-1",
            "timing-plan",
            "analyser",
            &["count-1"],
        )
        .unwrap();
    // One output fulfils the matching obligation of every active contract of the activity.
    assert_eq!(record["body"]["fulfils"], json!(["k1", "k2"]));
    assert_eq!(w.entity("k1")["state"], "fulfilled");
    assert_eq!(w.entity("k2")["state"], "active");
    w.record_data(analyser, analyser, "report-1", "report", "analyser", &[])
        .unwrap();
    let k2 = w.entity("k2");
    assert_eq!(k2["state"], "fulfilled");
    assert_eq!(k2["generates"][1]["fulfilled_by"], "report-1");
    // A fulfilled contract grants no more use.
    let light = id("org1", "traffic-light-1");
    w.record_data(
        light,
        light,
        "count-2",
        "vehicle-count",
        "traffic-light-1",
        &[],
    )
    .unwrap();
    let r = w.exec(orchestrator(), "k1", "count-2");
    assert_refused_without_writes(&mut w, r, 409, &["contract k1 is fulfilled"]);
}

#[test]
fn contract_becomes_violated_when_the_deadline_passes_unfulfilled() {
    let mut w = world_with_activity();
    let r = w.submit(
        id("org1", "auditor"),
        "EvaluateContract",
        json!({ "contract_id": "k1" }),
    );
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["guard deadline-passed(contract) failed: contract k1 is active"],
    );
    w.tick(3_601);
    assert_eq!(w.entity("k1")["effective_state"], "violated");
    let record = w
        .submit(
            id("org1", "auditor"),
            "EvaluateContract",
            json!({ "contract_id": "k1" }),
        )
        .unwrap();
    assert_eq!(
        record["body"],
        json!({ "what": "settle_contract", "contract": "k1", "state": "violated" })
    );
    assert_eq!(w.entity("k1")["state"], "violated");
    // Output after the deadline fulfils nothing.
    let analyser = id("org1", "analyser");
    let record = w
        .record_data(
            analyser,
            analyser,
            "late-plan",
            "timing-plan",
            "analyser",
            &[],
        )
        .unwrap();
    assert_eq!(record["body"]["fulfils"], json!([]));
}

#[test]
fn contract_definition_is_validated() {
    let mut w = world_with_activity();
    let r = w.define_contract("k1", "analyser", json!([{ "kind": "x" }]), json!([]));
    assert_refused_without_writes(&mut w, r, 409, &["contract k1 already exists"]);
    let r = w.define_contract("k9", "ghost", json!([{ "kind": "x" }]), json!([]));
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &[
            "define contract refused",
            "container ghost is unknown (never joined)",
        ],
    );
    let r = w.define_contract("k9", "analyser", json!([]), json!([]));
    assert_refused_without_writes(
        &mut w,
        r,
        400,
        &["a contract must USE or GENERATE something"],
    );
    let r = w.submit(orchestrator(), "DefineContract", json!({ "contract_id": "k9", "contractor": "analyser", "uses": [{ "kind": "x" }], "deadline": "2020-01-01T00:00:00Z" }));
    assert_refused_without_writes(
        &mut w,
        r,
        400,
        &["deadline 2020-01-01T00:00:00Z is not after the transaction time"],
    );
    let r = w.submit(orchestrator(), "DefineContract", json!({ "contract_id": "k9", "contractor": "analyser", "uses": [{ "kind": "x" }], "deadline": "next tuesday" }));
    assert_refused_without_writes(
        &mut w,
        r,
        400,
        &["deadline \"next tuesday\" is not an RFC 3339 timestamp"],
    );
}

#[test]
fn an_actuator_device_can_be_contracted_to_use_a_command() {
    let mut w = world_with_activity();
    w.define_contract(
        "apply-plan",
        "traffic-light-1",
        json!([{ "kind": "timing-plan", "source": "analyser" }]),
        json!([{ "kind": "ack" }]),
    )
    .unwrap();
    let analyser = id("org1", "analyser");
    w.record_data(analyser, analyser, "plan-1", "timing-plan", "analyser", &[])
        .unwrap();
    let light = id("org1", "traffic-light-1");
    let record = w.exec(light, "apply-plan", "plan-1").unwrap();
    assert_eq!(record["body"]["host_device"], json!(null));
    let ack = w
        .record_data(light, light, "ack-1", "ack", "traffic-light-1", &["plan-1"])
        .unwrap();
    assert_eq!(ack["body"]["fulfils"], json!(["apply-plan"]));
}

#[test]
fn a_device_records_its_node_and_drift_sets_availability_and_placement_status() {
    let mut w = World::with_orgs();
    let mut request = World::device_request(
        "edge-node-1",
        id("org1", "edge-node-1"),
        "edge-node",
        "nonce-node",
    );
    request["node_id"] = json!("swarm-node-7");
    let record = w.submit(orchestrator(), "IdentifyDevice", request).unwrap();
    assert_eq!(record["body"]["node_id"], "swarm-node-7", "{record}");
    assert_eq!(w.entity("edge-node-1")["node_id"], "swarm-node-7");

    // Unavailable (maintenance) is not left: the device stays joined.
    let r = w.submit(orchestrator(), "RecordDrift", json!({ "service": "node swarm-node-7", "description": "drained for maintenance", "device_id": "edge-node-1", "device_status": "unavailable" })).unwrap();
    assert_eq!(r["body"]["device_status"], "unavailable");
    let device = w.entity("edge-node-1");
    assert_eq!(device["state"], "joined");
    assert_eq!(device["availability"]["status"], "unavailable");
    assert_eq!(device["availability"]["reason"], "drained for maintenance");
    let r = w.submit(
        orchestrator(),
        "RecordDrift",
        json!({ "service": "s", "description": "d", "device_id": "edge-node-1" }),
    );
    assert_refused_without_writes(&mut w, r, 400, &["go together"]);
    let r = w.submit(orchestrator(), "RecordDrift", json!({ "service": "s", "description": "d", "device_id": "nowhere", "device_status": "available" }));
    assert_refused_without_writes(&mut w, r, 409, &["nowhere"]);

    // A placement's status follows drift, but only once it has an outcome, and only the
    // current placement.
    w.identify_container("analyser", None).unwrap();
    let place_tx = w.place("analyser", "edge-node-1").unwrap()["tx_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let missing = json!({ "service": "tom-analyser", "container_id": "analyser", "description": "service removed outside TOM", "placement_status": "missing", "authorising_tx": place_tx });
    let r = w.submit(orchestrator(), "RecordDrift", missing.clone());
    assert_refused_without_writes(&mut w, r, 409, &["has no outcome yet"]);
    w.submit(orchestrator(), "RecordOutcome", json!({ "container_id": "analyser", "action": "place", "authorising_tx": place_tx, "outcome": "running" })).unwrap();
    let mut stale = missing.clone();
    stale["authorising_tx"] = json!("tx-other");
    let r = w.submit(orchestrator(), "RecordDrift", stale);
    assert_refused_without_writes(
        &mut w,
        r,
        409,
        &["not container analyser's current placement"],
    );
    let r = w.submit(
        orchestrator(),
        "RecordDrift",
        json!({ "service": "s", "description": "d", "placement_status": "missing" }),
    );
    assert_refused_without_writes(&mut w, r, 400, &["needs container_id"]);
    let mut authorised = missing.clone();
    authorised["placement_status"] = json!("authorised");
    let r = w.submit(orchestrator(), "RecordDrift", authorised);
    assert_refused_without_writes(&mut w, r, 400, &["only by PlaceContainer"]);
    w.submit(orchestrator(), "RecordDrift", missing).unwrap();
    let analyser = w.entity("analyser");
    assert_eq!(analyser["state"], "joined");
    assert_eq!(analyser["placement"]["status"], "missing");
    // A missing placement may be replaced on the same device.
    w.place("analyser", "edge-node-1").unwrap();
    assert_eq!(w.entity("analyser")["placement"]["status"], "authorised");
}
