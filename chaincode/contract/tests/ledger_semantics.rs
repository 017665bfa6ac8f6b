//! The in-memory ledger must behave as a Fabric peer does, or tests prove nothing: a
//! transaction does not read its own writes, history is per committed transaction, range
//! queries are ordered by key, conflicting transactions fail MVCC validation at commit, and the
//! same proposal endorsed on two peers yields byte-identical read-write sets and responses.

mod common;

use common::*;
use serde_json::json;
use tom_contract::ledger::LedgerStub;
use tom_contract::memory::{MemoryLedger, SubmitError};
use tom_contract::simulation::{validate, MvccConflict, TxSimulator};

fn someone() -> tom_contract::Creator {
    creator(id("org1", "auditor"))
}

#[test]
fn a_transaction_does_not_read_its_own_writes() {
    let mut ledger = MemoryLedger::new();
    let mut first = TxSimulator::new(&ledger, "t1", START, someone());
    first.put_state("k", b"committed".to_vec()).unwrap();
    let rwset = first.into_rwset();
    ledger
        .commit_block(vec![tom_contract::memory::Endorsed {
            tx_id: "t1".into(),
            timestamp: START,
            rwset,
            response: vec![],
        }])
        .pop()
        .unwrap()
        .unwrap();

    let mut sim = TxSimulator::new(&ledger, "t2", START, someone());
    sim.put_state("k", b"pending".to_vec()).unwrap();
    sim.put_state("new", b"pending".to_vec()).unwrap();
    assert_eq!(
        sim.get_state("k").unwrap().as_deref(),
        Some(&b"committed"[..])
    );
    assert_eq!(sim.get_state("new").unwrap(), None);
    sim.delete_state("k").unwrap();
    assert_eq!(
        sim.get_state("k").unwrap().as_deref(),
        Some(&b"committed"[..])
    );
    let rwset = sim.into_rwset();
    assert_eq!(
        rwset.writes.get("k"),
        Some(&None),
        "the last write (a delete) wins"
    );
}

#[test]
fn conflicting_transactions_in_one_block_fail_mvcc() {
    let mut w = World::with_orgs();
    let device = id("org1", "traffic-light-1");
    let o = creator(id("org1", "orchestrator"));
    // Two orchestrators identify the same device concurrently: both endorse against the same state.
    let a = serde_json::to_vec(&World::device_request(
        "traffic-light-1",
        device,
        "actuator",
        "n-a",
    ))
    .unwrap();
    let b = serde_json::to_vec(&World::device_request(
        "traffic-light-1",
        device,
        "actuator",
        "n-b",
    ))
    .unwrap();
    let ea = w
        .ledger
        .endorse(&o, "ta", START, "IdentifyDevice", &[&a])
        .unwrap();
    let eb = w
        .ledger
        .endorse(&o, "tb", START, "IdentifyDevice", &[&b])
        .unwrap();
    let outcomes = w.ledger.commit_block(vec![ea, eb]);
    assert!(outcomes[0].is_ok());
    match &outcomes[1] {
        Err(SubmitError::Mvcc {
            tx_id,
            conflict: MvccConflict::ReadConflict { key, .. },
        }) => {
            assert_eq!(tx_id, "tb");
            assert!(key.contains("traffic-light-1"), "{key:?}");
        }
        other => panic!("expected an MVCC read conflict, got {other:?}"),
    }
    // Only the first one's nonce and record exist.
    let history = w
        .query(
            id("org1", "auditor"),
            "GetHistory",
            json!({ "id": "traffic-light-1" }),
        )
        .unwrap();
    assert_eq!(history.as_array().unwrap().len(), 1);
    assert_eq!(history[0]["tx_id"], "ta");
}

#[test]
fn a_range_read_that_gains_a_key_before_commit_is_a_phantom() {
    let mut w = World::with_orgs();
    w.identify_device("traffic-light-1", id("org1", "traffic-light-1"), "actuator")
        .unwrap();
    w.identify_device("edge-node-1", id("org1", "edge-node-1"), "edge-node")
        .unwrap();
    w.identify_container("analyser", None).unwrap();
    let o = creator(id("org1", "orchestrator"));
    // TerminateDevice scans the containers placed on the device; a placement committed in
    // between must invalidate it, or a device could leave while hosting a container.
    let leave = serde_json::to_vec(&json!({ "id": "edge-node-1" })).unwrap();
    let place =
        serde_json::to_vec(&json!({ "container_id": "analyser", "device_id": "edge-node-1" }))
            .unwrap();
    let e_leave = w
        .ledger
        .endorse(&o, "t-leave", START, "TerminateDevice", &[&leave])
        .unwrap();
    let e_place = w
        .ledger
        .endorse(&o, "t-place", START, "PlaceContainer", &[&place])
        .unwrap();
    let outcomes = w.ledger.commit_block(vec![e_place, e_leave]);
    assert!(outcomes[0].is_ok());
    assert!(
        matches!(
            &outcomes[1],
            Err(SubmitError::Mvcc {
                conflict: MvccConflict::PhantomRead { .. },
                ..
            })
        ),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(w.entity("edge-node-1")["state"], "joined");
}

#[test]
fn validation_accepts_an_unchanged_read_set() {
    let ledger = MemoryLedger::new();
    let sim = TxSimulator::new(&ledger, "t", START, someone());
    sim.get_state("absent").unwrap();
    sim.get_state_by_range("a", "z").unwrap();
    assert_eq!(validate(&sim.into_rwset(), &ledger).unwrap(), Ok(()));
}

#[test]
fn a_transaction_id_commits_once() {
    let mut w = World::with_orgs();
    let o = creator(id("org1", "orchestrator"));
    let arg = serde_json::to_vec(&World::container_request("c1", None)).unwrap();
    w.ledger
        .submit(&o, "same-id", START, "IdentifyContainer", &[&arg])
        .unwrap();
    let arg = serde_json::to_vec(&World::container_request("c2", None)).unwrap();
    let err = w
        .ledger
        .submit(&o, "same-id", START, "IdentifyContainer", &[&arg])
        .unwrap_err();
    assert!(
        matches!(err, SubmitError::DuplicateTxId(ref t) if t == "same-id"),
        "{err}"
    );
}

#[test]
fn history_has_one_entry_per_committed_transaction_oldest_first() {
    let mut w = World::with_orgs();
    let device = id("org1", "edge-node-1");
    w.identify_device("edge-node-1", device, "edge-node")
        .unwrap();
    w.tick(10);
    w.submit(
        id("org1", "orchestrator"),
        "TerminateDevice",
        json!({ "id": "edge-node-1" }),
    )
    .unwrap();
    let history = w
        .query(
            id("org1", "auditor"),
            "GetHistory",
            json!({ "id": "edge-node-1" }),
        )
        .unwrap();
    let h = history.as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert!(h[0]["timestamp"].as_str().unwrap() < h[1]["timestamp"].as_str().unwrap());
    assert_eq!(
        (
            h[0]["value"]["state"].as_str(),
            h[1]["value"]["state"].as_str()
        ),
        (Some("joined"), Some("left"))
    );
    assert_ne!(h[0]["tx_id"], h[1]["tx_id"]);
}

#[test]
fn records_come_back_in_time_order_and_pages_cover_each_once() {
    let mut w = World::with_orgs();
    for n in 0..7 {
        w.tick(1);
        w.identify_container(&format!("c{n}"), None).unwrap();
    }
    let all = w
        .query(
            id("org1", "auditor"),
            "QueryRecords",
            json!({ "agent": "Org1MSP/orchestrator" }),
        )
        .unwrap();
    let all: Vec<String> = all["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tx_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(all.len(), 7);
    let mut paged = Vec::new();
    let mut bookmark = String::new();
    loop {
        let page = w
            .query(
                id("org1", "auditor"),
                "QueryRecords",
                json!({ "agent": "Org1MSP/orchestrator", "page_size": 3, "bookmark": bookmark }),
            )
            .unwrap();
        let records = page["records"].as_array().unwrap();
        assert!(records.len() <= 3);
        paged.extend(
            records
                .iter()
                .map(|r| r["tx_id"].as_str().unwrap().to_owned()),
        );
        bookmark = page["bookmark"].as_str().unwrap().to_owned();
        if bookmark.is_empty() {
            break;
        }
    }
    assert_eq!(paged, all);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(
        all, sorted,
        "tx ids were issued in time order, so time order = id order here"
    );
}

#[test]
fn records_by_time_window_and_by_agent_use_the_indexes() {
    let mut w = World::with_orgs();
    w.tick(100);
    let t0 = w.now;
    w.identify_container("early", None).unwrap();
    w.tick(100);
    let mid = w.now;
    w.identify_container("late", None).unwrap();
    let q = |w: &mut World, arg| -> Vec<String> {
        let page = w.query(id("org1", "auditor"), "QueryRecords", arg).unwrap();
        page["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["subjects"][0].as_str().unwrap_or("-").to_owned())
            .collect()
    };
    assert_eq!(
        q(
            &mut w,
            json!({ "from": t0.to_rfc3339(), "to": mid.to_rfc3339() })
        ),
        ["early"]
    );
    assert_eq!(q(&mut w, json!({ "from": mid.to_rfc3339() })), ["late"]);
    assert_eq!(
        q(&mut w, json!({ "agent": "Org1MSP/orchestrator" })),
        ["early", "late"]
    );
    assert_eq!(
        q(&mut w, json!({ "agent": "Org2MSP/orchestrator" })),
        Vec::<String>::new()
    );
    assert_eq!(q(&mut w, json!({ "entity": "late" })), ["late"]);
    let err = w
        .query(
            id("org1", "auditor"),
            "QueryRecords",
            json!({ "from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z" }),
        )
        .unwrap_err();
    assert!(err.to_string().contains("is before from"), "{err}");
    let err = w
        .query(
            id("org1", "auditor"),
            "QueryRecords",
            json!({ "page_size": 0 }),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("page_size must be 1 to 1000"),
        "{err}"
    );
}

#[test]
fn two_peers_endorse_byte_identical_results() {
    // Two peers with the same committed history.
    let build = || {
        let mut w = World::with_orgs();
        w.identify_device("traffic-light-1", id("org1", "traffic-light-1"), "actuator")
            .unwrap();
        w.identify_device("edge-node-1", id("org1", "edge-node-1"), "edge-node")
            .unwrap();
        w.identify_container("analyser", Some(id("org1", "analyser")))
            .unwrap();
        w.place("analyser", "edge-node-1").unwrap();
        w.define_contract(
            "k1",
            "analyser",
            json!([{ "kind": "vehicle-count" }]),
            json!([{ "kind": "plan" }]),
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
        w
    };
    // Fixture signatures are randomised ECDSA, so the second peer is a copy of the first's
    // committed state rather than a second run of the same history.
    let peer1 = build();
    let mut peer2 = World::new();
    peer2.ledger = peer1.ledger.clone();
    let peer2_now = peer1.now;
    let analyser = id("org1", "analyser");
    let proposals: Vec<(&str, serde_json::Value, &tom_fixtures::Identity)> = vec![
        (
            "ExecContract",
            json!({ "contract_id": "k1", "data_id": "count-1" }),
            id("org1", "orchestrator"),
        ),
        (
            "RecordData",
            World::data_request(analyser, "plan-1", "plan", "analyser", &["count-1"]),
            analyser,
        ),
        (
            "GetLineage",
            json!({ "id": "count-1", "direction": "both" }),
            id("org2", "auditor"),
        ),
        (
            "ExportProv",
            json!({ "id": "count-1" }),
            id("org2", "auditor"),
        ),
        ("QueryRecords", json!({}), id("org2", "auditor")),
    ];
    for (function, arg, who) in proposals {
        let arg = serde_json::to_vec(&arg).unwrap();
        let e1 = peer1
            .ledger
            .endorse(&creator(who), "same-tx", peer1.now, function, &[&arg])
            .unwrap();
        let e2 = peer2
            .ledger
            .endorse(&creator(who), "same-tx", peer2_now, function, &[&arg])
            .unwrap();
        assert!(e1.response == e2.response, "{function}: responses differ");
        assert_eq!(e1.rwset, e2.rwset, "{function}: read-write sets differ");
    }
}
