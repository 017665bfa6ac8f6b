//! Inventory queries over the state indexes (`tom.device-by-state`, `tom.container-by-state`,
//! `tom.contract-by-state`, `tom.placed-on`) and opaque, URL-safe bookmarks.

mod common;

use common::*;
use serde_json::{json, Value};

fn auditor() -> &'static tom_fixtures::Identity {
    id("org1", "auditor")
}

/// A fixture device identity for each test device id.
fn dev(device_id: &str) -> &'static tom_fixtures::Identity {
    let name = match device_id {
        "edge-1" => "edge-node-1",
        "edge-2" => "roadside-gateway-1",
        _ => "traffic-light-1",
    };
    id("org1", name)
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every id of a listing, following bookmarks `page_size` at a time.
fn all(w: &mut World, function: &str, mut query: Value, page_size: u32) -> Vec<String> {
    let mut out = Vec::new();
    query["page_size"] = json!(page_size);
    loop {
        let page = w.query(auditor(), function, query.clone()).unwrap();
        out.extend(ids(&page));
        let bookmark = page["bookmark"].as_str().unwrap().to_owned();
        if bookmark.is_empty() {
            return out;
        }
        assert!(
            bookmark
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "bookmark {bookmark:?} is not URL-safe"
        );
        query["bookmark"] = json!(bookmark);
    }
}

#[test]
fn devices_by_org_and_state_follow_join_leave_and_availability() {
    let mut w = World::with_orgs();
    let o = id("org1", "orchestrator");
    for d in ["edge-1", "edge-2", "edge-3"] {
        w.identify_device(d, dev(d), "edge-node").unwrap();
    }
    w.identify_device("car-42", id("org2", "car-42"), "vehicle")
        .unwrap();
    let q = |w: &mut World, v: Value| all(w, "ListDevices", v, 2);
    assert_eq!(
        q(&mut w, json!({})),
        ["edge-1", "edge-2", "edge-3", "car-42"]
    );
    assert_eq!(q(&mut w, json!({ "org": "Org2MSP" })), ["car-42"]);
    w.submit(o, "TerminateDevice", json!({ "id": "edge-2" }))
        .unwrap();
    w.submit(o, "RecordDrift", json!({ "service": "node n3", "description": "drained", "device_id": "edge-3", "device_status": "unavailable" }))
        .unwrap();
    assert_eq!(
        q(&mut w, json!({ "org": "Org1MSP", "state": "joined" })),
        ["edge-1", "edge-3"]
    );
    assert_eq!(q(&mut w, json!({ "state": "left" })), ["edge-2"]);
    assert_eq!(q(&mut w, json!({ "state": "unavailable" })), ["edge-3"]);
    assert_eq!(
        q(&mut w, json!({ "state": "available" })),
        ["edge-1", "car-42"]
    );
    w.submit(o, "RecordDrift", json!({ "service": "node n3", "description": "back", "device_id": "edge-3", "device_status": "available" }))
        .unwrap();
    assert!(q(&mut w, json!({ "state": "unavailable" })).is_empty());
    // A state the contract does not know is a 400, not an empty list.
    assert!(w
        .query(auditor(), "ListDevices", json!({ "state": "asleep" }))
        .is_err());
}

#[test]
fn containers_by_device_follow_placement_and_leave() {
    let mut w = World::with_orgs();
    let o = id("org1", "orchestrator");
    w.identify_device("edge-1", dev("edge-1"), "edge-node")
        .unwrap();
    w.identify_device("edge-2", dev("edge-2"), "edge-node")
        .unwrap();
    for c in ["a", "b", "c"] {
        w.identify_container(c, None).unwrap();
        w.place(c, "edge-1").unwrap();
    }
    let q = |w: &mut World, v: Value| all(w, "ListContainers", v, 2);
    assert_eq!(q(&mut w, json!({ "device": "edge-1" })), ["a", "b", "c"]);
    w.place("b", "edge-2").unwrap();
    w.submit(o, "TerminateContainer", json!({ "id": "c" }))
        .unwrap();
    assert_eq!(q(&mut w, json!({ "device": "edge-1" })), ["a"]);
    assert_eq!(q(&mut w, json!({ "device": "edge-2" })), ["b"]);
    assert_eq!(q(&mut w, json!({ "state": "joined" })), ["a", "b"]);
    assert_eq!(
        q(&mut w, json!({ "state": "left", "org": "Org1MSP" })),
        ["c"]
    );
    assert!(w
        .query(
            auditor(),
            "ListContainers",
            json!({ "device": "edge-1", "state": "joined" })
        )
        .is_err());
}

#[test]
fn contracts_by_effective_state_at_query_time() {
    let mut w = World::with_orgs();
    let o = id("org1", "orchestrator");
    w.identify_device("edge-1", dev("edge-1"), "edge-node")
        .unwrap();
    w.identify_container("worker", None).unwrap();
    w.place("worker", "edge-1").unwrap();
    let uses = json!([{ "kind": "k" }]);
    let gen = json!([{ "kind": "out" }]);
    w.define_contract("early", "worker", uses.clone(), gen.clone())
        .unwrap();
    w.tick(1_800);
    w.define_contract("late", "worker", uses, gen).unwrap();
    let q = |w: &mut World, v: Value| all(w, "ListContracts", v, 1);
    assert_eq!(q(&mut w, json!({ "state": "active" })), ["early", "late"]);
    // early's deadline passes: violated at query time, before anyone settles it.
    w.tick(2_000);
    assert_eq!(q(&mut w, json!({ "state": "active" })), ["late"]);
    assert_eq!(q(&mut w, json!({ "state": "violated" })), ["early"]);
    let page = w
        .query(auditor(), "ListContracts", json!({ "state": "violated" }))
        .unwrap();
    assert_eq!(page["items"][0]["effective_state"], "violated");
    assert_eq!(page["items"][0]["state"], "active");
    // Settled: still violated, now from the stored state.
    w.submit(o, "EvaluateContract", json!({ "contract_id": "early" }))
        .unwrap();
    assert_eq!(q(&mut w, json!({ "state": "violated" })), ["early"]);
    w.tick(3_600);
    assert_eq!(q(&mut w, json!({ "state": "violated" })), ["late", "early"]);
    assert!(q(&mut w, json!({ "state": "active" })).is_empty());
    assert!(q(&mut w, json!({ "state": "fulfilled" })).is_empty());
    assert_eq!(q(&mut w, json!({})), ["early", "late"]);
}

#[test]
fn record_bookmarks_are_url_safe_and_foreign_ones_refused() {
    let mut w = World::with_orgs();
    for d in ["edge-1", "edge-2", "edge-3"] {
        w.identify_device(d, dev(d), "edge-node").unwrap();
    }
    let page = w
        .query(auditor(), "QueryRecords", json!({ "page_size": 1 }))
        .unwrap();
    let bookmark = page["bookmark"].as_str().unwrap();
    assert!(!bookmark.is_empty());
    assert!(!bookmark.contains('\0'), "{bookmark:?}");
    let page2 = w
        .query(
            auditor(),
            "QueryRecords",
            json!({ "page_size": 1, "bookmark": bookmark }),
        )
        .unwrap();
    assert_ne!(page["records"][0]["tx_id"], page2["records"][0]["tx_id"]);
    // A devices bookmark is not a records bookmark.
    let devices = w
        .query(auditor(), "ListDevices", json!({ "page_size": 1 }))
        .unwrap();
    let foreign = devices["bookmark"].as_str().unwrap();
    assert!(w
        .query(auditor(), "QueryRecords", json!({ "bookmark": foreign }))
        .is_err());
}

/// Issue 11: an id held by data is refused in words ("a data that is data that left…" before).
#[test]
fn an_id_held_by_data_is_refused_in_plain_words() {
    let mut w = World::with_orgs();
    let light = id("org1", "traffic-light-1");
    w.identify_device("traffic-light-1", light, "actuator")
        .unwrap();
    w.record_data(light, light, "speed-1", "speed", "traffic-light-1", &[])
        .unwrap();
    let (status, message) = rejection(w.identify_container("speed-1", None));
    assert_eq!(status, 409, "{message}");
    assert!(
        message.contains("entity speed-1 already exists (data recorded (left its generator) at tx"),
        "{message}"
    );
    assert!(!message.contains("a data"), "{message}");
}
