//! Property: whatever sequence of operations the orchestrators of two organisations, devices
//! and workloads attempt, under whatever consents the organisations gave each other, the
//! chaincode never commits a state the paper's machine or the organisation boundaries forbid.
//! Each attempted join, leave, placement and data departure commits exactly when a reference
//! model of Table II plus the consent rules (ARCHITECTURE.md, "Organisation boundaries") says
//! it may, and replaying the committed records in order never shows a leave without a join, a
//! PROV-ORCH without a PROV-DATA before it, a placement on an entity that has left, a device
//! leaving while it hosts a container, or an organisation's entity acted on without its consent.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};

const ORGS: [(&str, &str); 2] = [("org1", "Org1MSP"), ("org2", "Org2MSP")];
/// (id, fixture identity, organisation index)
const DEVICES: [(&str, &str, usize); 4] = [
    ("d0", "traffic-light-1", 0),
    ("d1", "edge-node-1", 0),
    ("d2", "car-42", 1),
    ("d3", "rain-sensor-7", 1),
];
const CONTAINERS: [(&str, &str, usize); 3] = [
    ("c0", "analyser", 0),
    ("c1", "collector", 0),
    ("c2", "tractor-3", 1),
];

/// Who submits: the orchestrator of organisation 0 or 1.
type Actor = usize;

#[derive(Debug, Clone)]
enum Op {
    JoinDevice(usize, Actor),
    LeaveDevice(usize, Actor),
    JoinContainer(usize, Actor),
    LeaveContainer(usize, Actor),
    Place(usize, usize, Actor),
    Define(usize, usize, Actor),
    /// Submitted by the generator itself (`None`) or by an organisation's orchestrator.
    RecordFromDevice(usize, Vec<usize>, Option<Actor>),
    RecordFromContainer(usize, Vec<usize>, Option<Actor>),
    Exec(usize, usize, Actor),
    Tick(i64),
}

/// One organisation's consents to the other.
#[derive(Debug, Clone, Copy, Default)]
struct Consent {
    orchestrators: bool,
    hosts: bool,
    shares: bool,
}

fn consent() -> impl Strategy<Value = Consent> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(orchestrators, hosts, shares)| {
        Consent {
            orchestrators,
            hosts,
            shares,
        }
    })
}

fn op() -> impl Strategy<Value = Op> {
    let inputs = proptest::collection::vec(0usize..8, 0..3);
    let actor = 0usize..2;
    let submitter = proptest::option::weighted(0.3, 0usize..2);
    // Weighted so that joins and placements are common enough for leaves, data and EXECs
    // to meet both their allowed and their refused cases in most sequences.
    prop_oneof![
        3 => (0usize..4, actor.clone()).prop_map(|(d, a)| Op::JoinDevice(d, a)),
        2 => (0usize..4, actor.clone()).prop_map(|(d, a)| Op::LeaveDevice(d, a)),
        3 => (0usize..3, actor.clone()).prop_map(|(c, a)| Op::JoinContainer(c, a)),
        1 => (0usize..3, actor.clone()).prop_map(|(c, a)| Op::LeaveContainer(c, a)),
        3 => (0usize..3, 0usize..4, actor.clone()).prop_map(|(c, d, a)| Op::Place(c, d, a)),
        2 => (0usize..2, 0usize..3, actor.clone()).prop_map(|(k, c, a)| Op::Define(k, c, a)),
        2 => (0usize..4, inputs.clone(), submitter.clone())
            .prop_map(|(d, i, s)| Op::RecordFromDevice(d, i, s)),
        2 => (0usize..3, inputs, submitter).prop_map(|(c, i, s)| Op::RecordFromContainer(c, i, s)),
        3 => (0usize..2, 0usize..8, actor).prop_map(|(k, x, a)| Op::Exec(k, x, a)),
        1 => (0i64..2_000).prop_map(Op::Tick),
    ]
}

/// The paper's machine and the organisations' consents, as simple sets.
#[derive(Default)]
struct Model {
    consent: [Consent; 2],
    devices: BTreeSet<&'static str>,
    containers: BTreeSet<&'static str>,
    placement: BTreeMap<&'static str, &'static str>,
    /// Data that left, with the organisation it belongs to.
    data: Vec<(String, usize)>,
    contracts: BTreeSet<String>,
}

impl Model {
    /// May organisation `actor`'s orchestrator act for `owner`'s entities?
    fn acts(&self, actor: Actor, owner: usize) -> bool {
        actor == owner || self.consent[owner].orchestrators
    }

    fn hosts(&self, device_org: usize, container_org: usize) -> bool {
        device_org == container_org || self.consent[device_org].hosts
    }

    fn shares(&self, data_org: usize, user_org: usize) -> bool {
        data_org == user_org || self.consent[data_org].shares
    }

    fn submitter_ok(&self, submitter: Option<Actor>, owner: usize) -> bool {
        submitter.is_none_or(|a| self.acts(a, owner))
    }
}

fn orchestrator(a: Actor) -> &'static tom_fixtures::Identity {
    id(ORGS[a].0, "orchestrator")
}

fn policy(c: Consent, other: &str) -> Value {
    let list = |yes: bool| if yes { json!([other]) } else { json!([]) };
    json!({
        "orchestrators": list(c.orchestrators),
        "hosts_containers_of": list(c.hosts),
        "shares_data_with": list(c.shares),
    })
}

fn run(consents: [Consent; 2], ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut w = World::new();
    w.register_org("org1", policy(consents[0], "Org2MSP"))
        .unwrap();
    w.register_org("org2", policy(consents[1], "Org1MSP"))
        .unwrap();
    let mut m = Model {
        consent: consents,
        ..Model::default()
    };
    let mut data_seq = 0;
    for op in ops {
        match op {
            Op::JoinDevice(i, a) => {
                let (d, who, org) = DEVICES[i];
                let ok = w
                    .identify_device_as(orchestrator(a), d, id(ORGS[org].0, who), "edge-node")
                    .is_ok();
                let allowed = !m.devices.contains(d) && m.acts(a, org);
                prop_assert_eq!(ok, allowed, "join device {} by org {}", d, a);
                if ok {
                    m.devices.insert(d);
                }
            }
            Op::LeaveDevice(i, a) => {
                let (d, _, org) = DEVICES[i];
                let ok = w
                    .submit(orchestrator(a), "TerminateDevice", json!({ "id": d }))
                    .is_ok();
                let allowed = m.devices.contains(d)
                    && !m.placement.values().any(|host| *host == d)
                    && m.acts(a, org);
                prop_assert_eq!(ok, allowed, "leave device {} by org {}", d, a);
                if ok {
                    m.devices.remove(d);
                }
            }
            Op::JoinContainer(i, a) => {
                let (c, who, org) = CONTAINERS[i];
                let ok = w
                    .identify_container_as(
                        orchestrator(a),
                        ORGS[org].1,
                        c,
                        Some(id(ORGS[org].0, who)),
                    )
                    .is_ok();
                let allowed = !m.containers.contains(c) && m.acts(a, org);
                prop_assert_eq!(ok, allowed, "join container {} by org {}", c, a);
                if ok {
                    m.containers.insert(c);
                }
            }
            Op::LeaveContainer(i, a) => {
                let (c, _, org) = CONTAINERS[i];
                let ok = w
                    .submit(orchestrator(a), "TerminateContainer", json!({ "id": c }))
                    .is_ok();
                let allowed = m.containers.contains(c) && m.acts(a, org);
                prop_assert_eq!(ok, allowed, "leave container {} by org {}", c, a);
                if ok {
                    m.containers.remove(c);
                    m.placement.remove(c);
                }
            }
            Op::Place(ci, di, a) => {
                let (c, _, c_org) = CONTAINERS[ci];
                let (d, _, d_org) = DEVICES[di];
                let ok = w
                    .submit(
                        orchestrator(a),
                        "PlaceContainer",
                        json!({ "container_id": c, "device_id": d }),
                    )
                    .is_ok();
                let allowed = m.containers.contains(c)
                    && m.devices.contains(d)
                    && m.placement.get(c) != Some(&d)
                    && m.acts(a, c_org)
                    && m.hosts(d_org, c_org);
                prop_assert_eq!(ok, allowed, "place {} on {} by org {}", c, d, a);
                if ok {
                    m.placement.insert(c, d);
                }
            }
            Op::Define(k, ci, a) => {
                let (c, _, org) = CONTAINERS[ci];
                let contract = format!("k{k}-{c}");
                let deadline = tom_contract::Timestamp {
                    seconds: w.now.seconds + 3_600,
                    nanos: 0,
                }
                .to_rfc3339();
                let ok = w
                    .submit(
                        orchestrator(a),
                        "DefineContract",
                        json!({ "contract_id": contract, "contractor": c, "uses": [{ "kind": "reading" }], "generates": [{ "kind": "result" }], "deadline": deadline }),
                    )
                    .is_ok();
                prop_assert_eq!(
                    ok,
                    m.containers.contains(c) && !m.contracts.contains(&contract) && m.acts(a, org),
                    "define {} by org {}",
                    contract,
                    a
                );
                if ok {
                    m.contracts.insert(contract);
                }
            }
            Op::RecordFromDevice(i, inputs, submitter) => {
                let (d, who, org) = DEVICES[i];
                let inputs = pick(&m.data, &inputs);
                data_seq += 1;
                let x = format!("x{data_seq}");
                let refs: Vec<&str> = inputs.iter().map(|(x, _)| x.as_str()).collect();
                let device = id(ORGS[org].0, who);
                let recorder = submitter.map_or(device, orchestrator);
                let ok = w
                    .record_data(recorder, device, &x, "reading", d, &refs)
                    .is_ok();
                let allowed = m.devices.contains(d)
                    && m.submitter_ok(submitter, org)
                    && inputs.iter().all(|(_, o)| m.shares(*o, org));
                prop_assert_eq!(
                    ok,
                    allowed,
                    "record {} from device {} by {:?}",
                    x,
                    d,
                    submitter
                );
                if ok {
                    m.data.push((x, org));
                }
            }
            Op::RecordFromContainer(i, inputs, submitter) => {
                let (c, who, org) = CONTAINERS[i];
                let inputs = pick(&m.data, &inputs);
                data_seq += 1;
                let x = format!("x{data_seq}");
                let refs: Vec<&str> = inputs.iter().map(|(x, _)| x.as_str()).collect();
                let workload = id(ORGS[org].0, who);
                let recorder = submitter.map_or(workload, orchestrator);
                let ok = w
                    .record_data(recorder, workload, &x, "result", c, &refs)
                    .is_ok();
                let allowed = m.containers.contains(c)
                    && m.placement.contains_key(c)
                    && m.submitter_ok(submitter, org)
                    && inputs.iter().all(|(_, o)| m.shares(*o, org));
                prop_assert_eq!(
                    ok,
                    allowed,
                    "record {} from container {} by {:?}",
                    x,
                    c,
                    submitter
                );
                if ok {
                    m.data.push((x, org));
                }
            }
            Op::Exec(k, x, a) => {
                let data = m
                    .data
                    .get(x)
                    .map(|(x, _)| x.clone())
                    .unwrap_or_else(|| "never-recorded".into());
                let contract = m
                    .contracts
                    .iter()
                    .nth(k)
                    .cloned()
                    .unwrap_or_else(|| "k-none".into());
                let _ = w.exec(orchestrator(a), &contract, &data);
            }
            Op::Tick(s) => w.tick(s),
        }
    }
    check_replay(&mut w, &m)
}

fn pick(data: &[(String, usize)], indexes: &[usize]) -> Vec<(String, usize)> {
    let mut picked: Vec<(String, usize)> = indexes
        .iter()
        .filter_map(|i| data.get(*i).cloned())
        .collect();
    picked.sort();
    picked.dedup();
    picked
}

/// Replay every committed record in commit order against the paper's machine and the
/// organisations' consents.
fn check_replay(w: &mut World, m: &Model) -> Result<(), TestCaseError> {
    let org_index = |msp: &str| ORGS.iter().position(|(_, id)| *id == msp);
    // Entity → organisation, learnt from the records themselves.
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    // An agent is an orchestrator of an organisation, or a device/workload identity.
    let acting_org = |record: &Value| -> Option<usize> {
        (record["agent"]["role"] == "orchestrator")
            .then(|| org_index(record["agent"]["msp_id"].as_str().unwrap_or_default()))
            .flatten()
    };
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
            "PROV-ID-create" => {
                let e = s(&body["entity"]);
                let org = org_index(&s(&body["org"])).unwrap();
                prop_assert!(
                    m.acts(acting_org(record).unwrap(), org),
                    "identified without its organisation's consent: {}",
                    record
                );
                owner.insert(e.clone(), org);
                prop_assert!(joined.insert(e), "join of a joined entity: {}", record)
            }
            "PROV-ID-delete" => {
                let e = s(&body["entity"]);
                prop_assert!(
                    m.acts(acting_org(record).unwrap(), owner[&e]),
                    "terminated without its organisation's consent: {}",
                    record
                );
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
                prop_assert!(
                    m.acts(acting_org(record).unwrap(), owner[&c]) && m.hosts(owner[&d], owner[&c]),
                    "placement without consent: {}",
                    record
                );
                placement.insert(c, d);
            }
            "PROV-DATA" => {
                let x = s(&body["data"]);
                let generator_org = owner[&s(&body["generated_by"])];
                if let Some(a) = acting_org(record) {
                    prop_assert!(
                        m.acts(a, generator_org),
                        "data recorded for another organisation without consent: {}",
                        record
                    );
                }
                for input in body["derived_from"].as_array().unwrap() {
                    prop_assert!(
                        m.shares(owner[&s(input)], generator_org),
                        "derived from data not shared with the generator's organisation: {}",
                        record
                    );
                }
                owner.insert(x.clone(), generator_org);
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
                    m.shares(owner[&s(&body["data"])], owner[&activity]),
                    "data used by an organisation it was not shared with: {}",
                    record
                );
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
    fn committed_histories_respect_the_papers_state_machine(
        consents in proptest::array::uniform2(consent()),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(consents, ops)?;
    }
}
