//! The paper's smart-city scenario (Section VI) end to end at library level: a car joins,
//! traffic management's collector and analyser containers are identified and placed, sensor
//! data is recorded and used under contracts, a traffic-light command is generated and
//! acknowledged, and an incident audit reconstructs it all — also as a W3C PROV-JSON document
//! read back by the independent Python `prov` package.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn run_scenario() -> World {
    let mut w = World::with_orgs();
    let o = id("org1", "orchestrator");
    // Devices join: the car (Mobility Provider) registers with the city's local network.
    w.identify_device("car-42", id("org2", "car-42"), "vehicle")
        .unwrap();
    w.identify_device("traffic-light-1", id("org1", "traffic-light-1"), "actuator")
        .unwrap();
    w.identify_device(
        "roadside-gateway-1",
        id("org1", "roadside-gateway-1"),
        "gateway",
    )
    .unwrap();
    w.identify_device("edge-node-1", id("org1", "edge-node-1"), "edge-node")
        .unwrap();
    // Containers join and are placed.
    w.identify_container("collector", Some(id("org1", "collector")))
        .unwrap();
    w.identify_container("analyser", Some(id("org1", "analyser")))
        .unwrap();
    w.place("collector", "roadside-gateway-1").unwrap();
    w.place("analyser", "edge-node-1").unwrap();
    // The orchestration plan as contracts: USE and GENERATE.
    w.define_contract(
        "collect",
        "collector",
        json!([{ "kind": "vehicle-position", "source": "car-42" }, { "kind": "vehicle-count", "source": "traffic-light-1" }]),
        json!([{ "kind": "junction-summary" }]),
    )
    .unwrap();
    w.define_contract(
        "optimise",
        "analyser",
        json!([{ "kind": "junction-summary", "source": "collector" }]),
        json!([{ "kind": "timing-plan" }]),
    )
    .unwrap();
    w.define_contract(
        "apply",
        "traffic-light-1",
        json!([{ "kind": "timing-plan", "source": "analyser" }]),
        json!([{ "kind": "ack" }]),
    )
    .unwrap();
    // Data leaves the sensors (signed hashes) and joins the collector.
    let car = id("org2", "car-42");
    let light = id("org1", "traffic-light-1");
    let collector = id("org1", "collector");
    let analyser = id("org1", "analyser");
    w.record_data(car, car, "pos-1", "vehicle-position", "car-42", &[])
        .unwrap();
    w.record_data(
        light,
        light,
        "count-1",
        "vehicle-count",
        "traffic-light-1",
        &[],
    )
    .unwrap();
    w.exec(collector, "collect", "pos-1").unwrap();
    w.exec(collector, "collect", "count-1").unwrap();
    w.record_data(
        collector,
        collector,
        "summary-1",
        "junction-summary",
        "collector",
        &["pos-1", "count-1"],
    )
    .unwrap();
    w.exec(o, "optimise", "summary-1").unwrap();
    w.record_data(
        analyser,
        analyser,
        "plan-1",
        "timing-plan",
        "analyser",
        &["summary-1"],
    )
    .unwrap();
    // SET(light, colour): the traffic light uses the plan and acknowledges it.
    w.exec(light, "apply", "plan-1").unwrap();
    w.record_data(light, light, "ack-1", "ack", "traffic-light-1", &["plan-1"])
        .unwrap();
    w
}

#[test]
fn the_scenario_commits_every_step_and_fulfils_every_contract() {
    let mut w = run_scenario();
    for contract in ["collect", "optimise", "apply"] {
        assert_eq!(w.entity(contract)["state"], "fulfilled", "{contract}");
    }
    let kinds: Vec<String> = w
        .ledger
        .events()
        .iter()
        .map(|e| e.event.name.clone())
        .collect();
    let count = |k: &str| kinds.iter().filter(|n| *n == k).count();
    assert_eq!(
        (
            count("ORG"),
            count("PROV-ID-create"),
            count("ORCHESTRATE"),
            count("CONTRACT"),
            count("PROV-DATA"),
            count("PROV-ORCH")
        ),
        (2, 6, 2, 3, 5, 4)
    );
}

#[test]
fn the_incident_audit_reconstructs_the_command_upstream() {
    let mut w = run_scenario();
    let lineage = w
        .query(
            id("org1", "auditor"),
            "GetLineage",
            json!({ "id": "ack-1", "direction": "up", "depth": 8 }),
        )
        .unwrap();
    let nodes = lineage["nodes"].as_object().unwrap();
    let has = |rel: &str, from: &str, to: &str| {
        lineage["relations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["relation"] == rel && r["from"] == from && r["to"] == to)
    };
    // What it was derived from, back to the car's position report.
    for (from, to) in [
        ("ack-1", "plan-1"),
        ("plan-1", "summary-1"),
        ("summary-1", "pos-1"),
        ("summary-1", "count-1"),
    ] {
        assert!(
            has("wasDerivedFrom", from, to),
            "{from} wasDerivedFrom {to}"
        );
    }
    // Which activity generated each item, on which device.
    for (data, activity) in [
        ("plan-1", "analyser"),
        ("summary-1", "collector"),
        ("pos-1", "car-42"),
        ("ack-1", "traffic-light-1"),
    ] {
        assert!(
            has("wasGeneratedBy", data, activity),
            "{data} wasGeneratedBy {activity}"
        );
    }
    assert!(has("placedOn", "analyser", "edge-node-1"));
    assert!(has("placedOn", "collector", "roadside-gateway-1"));
    // Which inputs each activity used, under which contract, by whose orchestration.
    assert!(
        has("used", "collector", "pos-1")
            && has("used", "analyser", "summary-1")
            && has("used", "traffic-light-1", "plan-1")
    );
    assert!(
        has("underContract", "analyser", "optimise")
            && has("underContract", "collector", "collect")
    );
    assert!(has("wasAssociatedWith", "analyser", "Org1MSP/orchestrator"));
    assert!(has("wasAttributedTo", "pos-1", "Org2MSP/car-42"));
    for id in [
        "car-42",
        "edge-node-1",
        "roadside-gateway-1",
        "collect",
        "optimise",
        "apply",
        "Org1MSP/orchestrator",
        "pos-1",
        "count-1",
    ] {
        assert!(nodes.contains_key(id), "lineage should name {id}");
    }
    assert_eq!(nodes["edge-node-1"]["entity"]["type"], "device");

    // Depth limits how far back it goes.
    let shallow = w
        .query(
            id("org1", "auditor"),
            "GetLineage",
            json!({ "id": "ack-1", "depth": 1 }),
        )
        .unwrap();
    let shallow_nodes = shallow["nodes"].as_object().unwrap();
    assert!(
        shallow_nodes.contains_key("plan-1")
            && !shallow_nodes.contains_key("summary-1")
            && !shallow_nodes.contains_key("pos-1")
    );
}

#[test]
fn downstream_lineage_shows_who_used_the_cars_data_and_what_was_derived() {
    let mut w = run_scenario();
    let lineage = w
        .query(
            id("org2", "auditor"),
            "GetLineage",
            json!({ "id": "pos-1", "direction": "down" }),
        )
        .unwrap();
    let nodes = lineage["nodes"].as_object().unwrap();
    for id in [
        "summary-1",
        "plan-1",
        "ack-1",
        "collector",
        "analyser",
        "traffic-light-1",
    ] {
        assert!(
            nodes.contains_key(id),
            "downstream of pos-1 should reach {id}"
        );
    }
    assert!(
        !nodes.contains_key("count-1"),
        "a sibling input is not downstream of pos-1"
    );
    // The car's own history and its records by agent are there for the auditor too.
    let records = w
        .query(
            id("org2", "auditor"),
            "QueryRecords",
            json!({ "entity": "car-42" }),
        )
        .unwrap();
    let kinds: Vec<&str> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["PROV-ID-create", "CONTRACT", "PROV-DATA"]);
}

/// Counts of each PROV element and relation in TOM's export of ack-1's upstream lineage,
/// worked out by hand from the scenario (see the module docs of `tom_contract::prov`):
/// entities = 5 data + 2 containers + 3 contracts; activities = 2 containers + the traffic
/// light and the car (which generate or use data); agents = 4 devices + 6 identities
/// (the two organisations' orchestrators — Org2's identified its own car — and the traffic
/// light's, analyser's, collector's and car's certificates);
/// generation 5; usage 4 data + 3 contracts; derivation 4; attribution 5; association 8;
/// delegation 2 (the edge node and the roadside gateway act on the orchestrator's behalf).
fn expected_prov_counts() -> BTreeMap<String, u64> {
    [
        ("ProvEntity", 10),
        ("ProvActivity", 4),
        ("ProvAgent", 10),
        ("ProvGeneration", 5),
        ("ProvUsage", 7),
        ("ProvDerivation", 4),
        ("ProvAttribution", 5),
        ("ProvAssociation", 8),
        ("ProvDelegation", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[test]
fn the_prov_json_export_reads_back_with_the_python_prov_package() {
    let mut w = run_scenario();
    let doc = w
        .query(
            id("org1", "auditor"),
            "ExportProv",
            json!({ "id": "ack-1" }),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ack-1.prov.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/tools/prov_counts.py"
    );
    let output = Command::new("python3").arg(script).arg(&path).output().unwrap_or_else(|e| {
        panic!("python3 is needed to check the PROV export ({e}); run scripts/setup/05-python-prov.sh")
    });
    assert!(
        output.status.success(),
        "the Python prov package could not read TOM's PROV-JSON (run scripts/setup/05-python-prov.sh if it is missing):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: Value = serde_json::from_slice(&output.stdout).unwrap();
    let counts: BTreeMap<String, u64> = serde_json::from_value(read["counts"].clone()).unwrap();
    assert_eq!(counts, expected_prov_counts());
    let elements: Vec<&str> = read["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for expected in [
        "tom:ack-1",
        "tom:pos-1",
        "tom:activity.analyser",
        "tom:edge-node-1",
        "tom:agent.Org1MSP.orchestrator",
        "tom:optimise",
    ] {
        assert!(
            elements.contains(&expected),
            "{expected} missing from {elements:?}"
        );
    }
}
