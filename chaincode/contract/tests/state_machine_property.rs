//! Property: whatever sequence of operations orchestrators, devices and workloads attempt, the
//! chaincode never commits a state the paper's machine forbids. Each attempted join, leave,
//! placement and data departure commits exactly when a reference model of Table II says its
//! guards hold, and replaying the committed records in order never shows a leave without a
//! join, a PROV-ORCH without a PROV-DATA before it, a placement on an entity that has left, or
//! a device leaving while it hosts a container.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};

const DEVICES: [(&str, &str); 3] = [
    ("d0", "traffic-light-1"),
    ("d1", "roadside-gateway-1"),
    ("d2", "edge-node-1"),
];
const CONTAINERS: [(&str, &str); 3] =
    [("c0", "analyser"), ("c1", "collector"), ("c2", "publisher")];

#[derive(Debug, Clone)]
enum Op {
    JoinDevice(usize),
    LeaveDevice(usize),
    JoinContainer(usize),
    LeaveContainer(usize),
    Place(usize, usize),
    Define(usize, usize),
    RecordFromDevice(usize, Vec<usize>),
    RecordFromContainer(usize, Vec<usize>),
    Exec(usize, usize),
    Tick(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let inputs = proptest::collection::vec(0usize..8, 0..3);
    // Weighted so that joins and placements are common enough for leaves, data and EXECs
    // to meet both their allowed and their refused cases in most sequences.
    prop_oneof![
        3 => (0usize..3).prop_map(Op::JoinDevice),
        2 => (0usize..3).prop_map(Op::LeaveDevice),
        3 => (0usize..3).prop_map(Op::JoinContainer),
        1 => (0usize..3).prop_map(Op::LeaveContainer),
        3 => (0usize..3, 0usize..3).prop_map(|(c, d)| Op::Place(c, d)),
        2 => (0usize..2, 0usize..3).prop_map(|(k, c)| Op::Define(k, c)),
        2 => (0usize..3, inputs.clone()).prop_map(|(d, i)| Op::RecordFromDevice(d, i)),
        2 => (0usize..3, inputs).prop_map(|(c, i)| Op::RecordFromContainer(c, i)),
        3 => (0usize..2, 0usize..8).prop_map(|(k, x)| Op::Exec(k, x)),
        1 => (0i64..2_000).prop_map(Op::Tick),
    ]
}

/// The paper's machine, as simple sets.
#[derive(Default)]
struct Model {
    devices: BTreeSet<&'static str>,
    containers: BTreeSet<&'static str>,
    placement: BTreeMap<&'static str, &'static str>,
    data: Vec<String>,
    contracts: BTreeSet<String>,
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut w = World::with_orgs();
    let mut m = Model::default();
    let o = id("org1", "orchestrator");
    let mut data_seq = 0;
    for op in ops {
        match op {
            Op::JoinDevice(i) => {
                let (d, who) = DEVICES[i];
                let ok = w.identify_device(d, id("org1", who), "edge-node").is_ok();
                prop_assert_eq!(ok, !m.devices.contains(d), "join device {}", d);
                if ok {
                    m.devices.insert(d);
                }
            }
            Op::LeaveDevice(i) => {
                let (d, _) = DEVICES[i];
                let ok = w.submit(o, "TerminateDevice", json!({ "id": d })).is_ok();
                let allowed = m.devices.contains(d) && !m.placement.values().any(|host| *host == d);
                prop_assert_eq!(ok, allowed, "leave device {}", d);
                if ok {
                    m.devices.remove(d);
                }
            }
            Op::JoinContainer(i) => {
                let (c, who) = CONTAINERS[i];
                let ok = w.identify_container(c, Some(id("org1", who))).is_ok();
                prop_assert_eq!(ok, !m.containers.contains(c), "join container {}", c);
                if ok {
                    m.containers.insert(c);
                }
            }
            Op::LeaveContainer(i) => {
                let (c, _) = CONTAINERS[i];
                let ok = w
                    .submit(o, "TerminateContainer", json!({ "id": c }))
                    .is_ok();
                prop_assert_eq!(ok, m.containers.contains(c), "leave container {}", c);
                if ok {
                    m.containers.remove(c);
                    m.placement.remove(c);
                }
            }
            Op::Place(ci, di) => {
                let (c, d) = (CONTAINERS[ci].0, DEVICES[di].0);
                let ok = w.place(c, d).is_ok();
                let allowed = m.containers.contains(c)
                    && m.devices.contains(d)
                    && m.placement.get(c) != Some(&d);
                prop_assert_eq!(ok, allowed, "place {} on {}", c, d);
                if ok {
                    m.placement.insert(c, d);
                }
            }
            Op::Define(k, ci) => {
                let c = CONTAINERS[ci].0;
                let contract = format!("k{k}-{c}");
                let ok = w
                    .define_contract(
                        &contract,
                        c,
                        json!([{ "kind": "reading" }]),
                        json!([{ "kind": "result" }]),
                    )
                    .is_ok();
                prop_assert_eq!(
                    ok,
                    m.containers.contains(c) && !m.contracts.contains(&contract),
                    "define {}",
                    contract
                );
                if ok {
                    m.contracts.insert(contract);
                }
            }
            Op::RecordFromDevice(i, inputs) => {
                let (d, who) = DEVICES[i];
                let inputs = pick(&m.data, &inputs);
                data_seq += 1;
                let x = format!("x{data_seq}");
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let ok = w
                    .record_data(id("org1", who), id("org1", who), &x, "reading", d, &refs)
                    .is_ok();
                prop_assert_eq!(ok, m.devices.contains(d), "record {} from device {}", x, d);
                if ok {
                    m.data.push(x);
                }
            }
            Op::RecordFromContainer(i, inputs) => {
                let (c, who) = CONTAINERS[i];
                let inputs = pick(&m.data, &inputs);
                data_seq += 1;
                let x = format!("x{data_seq}");
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let ok = w
                    .record_data(id("org1", who), id("org1", who), &x, "result", c, &refs)
                    .is_ok();
                prop_assert_eq!(
                    ok,
                    m.containers.contains(c) && m.placement.contains_key(c),
                    "record {} from container {}",
                    x,
                    c
                );
                if ok {
                    m.data.push(x);
                }
            }
            Op::Exec(k, x) => {
                let data = m
                    .data
                    .get(x)
                    .cloned()
                    .unwrap_or_else(|| "never-recorded".into());
                let contract = m
                    .contracts
                    .iter()
                    .nth(k)
                    .cloned()
                    .unwrap_or_else(|| "k-none".into());
                let _ = w.exec(o, &contract, &data);
            }
            Op::Tick(s) => w.tick(s),
        }
    }
    check_replay(&mut w)
}

fn pick(data: &[String], indexes: &[usize]) -> Vec<String> {
    let mut picked: Vec<String> = indexes
        .iter()
        .filter_map(|i| data.get(*i).cloned())
        .collect();
    picked.sort();
    picked.dedup();
    picked
}

/// Replay every committed record in commit order against the paper's machine.
fn check_replay(w: &mut World) -> Result<(), TestCaseError> {
    let page = w
        .query(
            id("org1", "auditor"),
            "QueryRecords",
            json!({ "page_size": 1000 }),
        )
        .unwrap();
    prop_assert!(
        page["bookmark"].as_str().unwrap().is_empty(),
        "test sequences stay under one page"
    );
    let mut joined: BTreeSet<String> = BTreeSet::new();
    let mut placement: BTreeMap<String, String> = BTreeMap::new();
    let mut left_data: BTreeSet<String> = BTreeSet::new();
    for record in page["records"].as_array().unwrap() {
        let body = &record["body"];
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        match record["kind"].as_str().unwrap() {
            "PROV-ID-create" => prop_assert!(
                joined.insert(s(&body["entity"])),
                "join of a joined entity: {}",
                record
            ),
            "PROV-ID-delete" => {
                let e = s(&body["entity"]);
                prop_assert!(joined.remove(&e), "leave without join: {}", record);
                if body["entity_type"] == "device" {
                    prop_assert!(
                        !placement.values().any(|d| *d == e),
                        "device left while hosting: {}",
                        record
                    );
                }
                placement.remove(&e);
            }
            "ORCHESTRATE" => {
                let (c, d) = (s(&body["deployed"]), s(&body["location"]));
                prop_assert!(
                    joined.contains(&c) && joined.contains(&d),
                    "placement of an entity that is not joined: {}",
                    record
                );
                placement.insert(c, d);
            }
            "PROV-DATA" => {
                let x = s(&body["data"]);
                prop_assert!(
                    joined.contains(&s(&body["generated_by"])),
                    "data from a generator that is not joined: {}",
                    record
                );
                for input in body["derived_from"].as_array().unwrap() {
                    prop_assert!(
                        left_data.contains(&s(input)),
                        "derived from data that never left: {}",
                        record
                    );
                }
                prop_assert!(left_data.insert(x), "data left twice: {}", record);
            }
            "PROV-ORCH" => {
                prop_assert!(
                    left_data.contains(&s(&body["data"])),
                    "PROV-ORCH without a PROV-DATA before it: {}",
                    record
                );
                let activity = s(&body["activity"]);
                prop_assert!(
                    joined.contains(&activity),
                    "EXEC by an activity that is not joined: {}",
                    record
                );
                let host = body["host_device"].as_str().map(str::to_owned);
                prop_assert_eq!(
                    placement.get(&activity),
                    host.as_ref(),
                    "EXEC host: {}",
                    record
                );
            }
            "ORG" | "CONTRACT" => {}
            other => prop_assert!(false, "unexpected record kind {}", other),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn committed_histories_respect_the_papers_state_machine(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
