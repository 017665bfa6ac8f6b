//! Lineage answers whose cost depends on the answer, not on the ledger (issue 13): `limit`
//! and `fan_out` bound what one answer holds *and* what it reads (counted by a wrapping stub),
//! a cut answer says `truncated` and its `bookmark` continues it, and the parts together are
//! the whole lineage, each data item walked once. A garbled or forged bookmark is a 400 that
//! names `bookmark`.

mod common;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::*;
use serde_json::{json, Value};
use tom_contract::ledger::{KeyModification, KeyValue, LedgerError};
use tom_contract::memory::MemoryLedger;
use tom_contract::simulation::TxSimulator;
use tom_contract::{Creator, LedgerStub, Timestamp};

fn auditor() -> &'static tom_fixtures::Identity {
    id("org1", "auditor")
}

/// A stub that counts what the contract reads: point reads, range reads and the rows they
/// returned.
struct Counting<'a> {
    inner: TxSimulator<'a, MemoryLedger>,
    gets: Cell<usize>,
    ranges: Cell<usize>,
    rows: Cell<usize>,
}

impl Counting<'_> {
    fn reads(&self) -> usize {
        self.gets.get() + self.rows.get()
    }
}

impl LedgerStub for Counting<'_> {
    fn tx_id(&self) -> &str {
        self.inner.tx_id()
    }
    fn tx_timestamp(&self) -> Timestamp {
        self.inner.tx_timestamp()
    }
    fn creator(&self) -> &Creator {
        self.inner.creator()
    }
    fn channel_id(&self) -> &str {
        self.inner.channel_id()
    }
    fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        self.gets.set(self.gets.get() + 1);
        self.inner.get_state(key)
    }
    fn put_state(&mut self, key: &str, value: Vec<u8>) -> Result<(), LedgerError> {
        self.inner.put_state(key, value)
    }
    fn delete_state(&mut self, key: &str) -> Result<(), LedgerError> {
        self.inner.delete_state(key)
    }
    fn get_state_by_range(&self, start: &str, end: &str) -> Result<Vec<KeyValue>, LedgerError> {
        let rows = self.inner.get_state_by_range(start, end)?;
        self.ranges.set(self.ranges.get() + 1);
        self.rows.set(self.rows.get() + rows.len());
        Ok(rows)
    }
    fn get_state_by_range_with_pagination(
        &self,
        start: &str,
        end: &str,
        page_size: u32,
        bookmark: &str,
    ) -> Result<(Vec<KeyValue>, String), LedgerError> {
        let (rows, next) = self
            .inner
            .get_state_by_range_with_pagination(start, end, page_size, bookmark)?;
        self.ranges.set(self.ranges.get() + 1);
        // The row that tells whether there is a next page is read too.
        self.rows
            .set(self.rows.get() + rows.len() + usize::from(!next.is_empty()));
        Ok((rows, next))
    }
    fn get_history_for_key(&self, key: &str) -> Result<Vec<KeyModification>, LedgerError> {
        self.inner.get_history_for_key(key)
    }
    fn set_event(&mut self, name: &str, payload: Vec<u8>) -> Result<(), LedgerError> {
        self.inner.set_event(name, payload)
    }
}

/// Run `function(arg)` as the auditor through a counting stub: the answer and the reads.
fn counted(w: &mut World, function: &str, arg: Value) -> (Value, usize) {
    let tx = w.next_tx();
    let sim = TxSimulator::new(&w.ledger, tx, w.now, creator(auditor()));
    let mut stub = Counting {
        inner: sim,
        gets: Cell::new(0),
        ranges: Cell::new(0),
        rows: Cell::new(0),
    };
    let arg = serde_json::to_vec(&arg).unwrap();
    let bytes = tom_contract::invoke(&mut stub, function, &[&arg]).unwrap();
    let reads = stub.reads();
    (serde_json::from_slice(&bytes).unwrap(), reads)
}

fn relations_of(answer: &Value, kind: &str) -> Vec<Value> {
    answer["relations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["relation"] == kind)
        .cloned()
        .collect()
}

/// A traffic light's count used by `users` executions of the analyser, each under its own
/// contract.
fn popular(users: usize) -> World {
    let mut w = World::with_orgs();
    let light = id("org1", "traffic-light-1");
    w.identify_device("traffic-light-1", light, "sensor")
        .unwrap();
    w.identify_device("edge-node-1", id("org1", "edge-node-1"), "edge-node")
        .unwrap();
    w.identify_container("analyser", Some(id("org1", "analyser")))
        .unwrap();
    w.place("analyser", "edge-node-1").unwrap();
    for i in 0..users {
        w.define_contract(
            &format!("k-{i:04}"),
            "analyser",
            json!([{ "kind": "vehicle-count", "source": "traffic-light-1" }]),
            json!([]),
        )
        .unwrap();
    }
    w.record_data(
        light,
        light,
        "count-1",
        "vehicle-count",
        "traffic-light-1",
        &[],
    )
    .unwrap();
    for i in 0..users {
        w.exec(id("org1", "orchestrator"), &format!("k-{i:04}"), "count-1")
            .unwrap();
    }
    w
}

#[test]
fn a_data_item_with_a_thousand_users_costs_what_its_answer_holds() {
    let users = 1000;
    let mut w = popular(users);
    let query = |fan_out: u32| json!({ "id": "count-1", "direction": "down", "fan_out": fan_out });

    let (small, small_reads) = counted(&mut w, "GetLineage", query(10));
    assert_eq!(small["truncated"], true, "{small:#}");
    assert!(!small["bookmark"].as_str().unwrap().is_empty());
    assert_eq!(relations_of(&small, "used").len(), 10, "{small:#}");
    let nodes = small["nodes"].as_object().unwrap().len();
    assert!(
        nodes <= 10 + 10,
        "{nodes} nodes: 10 contracts plus the few around them"
    );
    // The walk read what it answers (10 EXECs: index rows, records, contracts), not the
    // 1,000 index entries and records of every user.
    assert!(small_reads <= 80, "{small_reads} reads for a fan-out of 10");

    let (wide, wide_reads) = counted(&mut w, "GetLineage", query(100));
    eprintln!("reads: fan_out 10 → {small_reads}, fan_out 100 → {wide_reads} ({users} users)");
    assert_eq!(relations_of(&wide, "used").len(), 100);
    assert!(
        wide_reads > 5 * small_reads && wide_reads <= 8 * 100,
        "{wide_reads} reads for a fan-out of 100, {small_reads} for 10"
    );

    // Continuing with the bookmark visits every EXEC once: 10 parts of 100.
    let mut used = BTreeSet::new();
    let mut parts = 0;
    let mut bookmark = String::new();
    loop {
        let mut q = query(100);
        if !bookmark.is_empty() {
            q["bookmark"] = json!(bookmark);
        }
        let part = w.query(auditor(), "GetLineage", q).unwrap();
        parts += 1;
        for r in relations_of(&part, "used") {
            assert!(
                used.insert(r["tx_id"].as_str().unwrap().to_owned()),
                "{r} twice"
            );
        }
        bookmark = part["bookmark"].as_str().unwrap_or_default().to_owned();
        let truncated = part
            .get("truncated")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        assert_eq!(truncated, !bookmark.is_empty(), "{part:#}");
        if bookmark.is_empty() {
            break;
        }
        assert!(parts < 50, "paging does not end");
    }
    assert_eq!(used.len(), users);
    assert_eq!(
        parts,
        users / 100,
        "the part that takes the last EXEC knows it is the last"
    );
}

#[test]
fn a_limit_bounds_the_nodes_of_an_answer() {
    let mut w = popular(60);
    let answer = w
        .query(
            auditor(),
            "GetLineage",
            json!({ "id": "count-1", "direction": "down", "limit": 20 }),
        )
        .unwrap();
    assert!(
        answer["nodes"].as_object().unwrap().len() <= 20,
        "{answer:#}"
    );
    assert_eq!(answer["truncated"], true);
}

/// A small DAG with merges: light → d0; d1, d2 from d0; d3 from d1 and d2; d4, d5 from d3;
/// d6 from d4 and d5; d0 also used by the analyser under a contract, which generated d7 from it.
fn dag() -> World {
    let mut w = World::with_orgs();
    let light = id("org1", "traffic-light-1");
    w.identify_device("traffic-light-1", light, "sensor")
        .unwrap();
    w.identify_device("edge-node-1", id("org1", "edge-node-1"), "edge-node")
        .unwrap();
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
    let record = |w: &mut World, id: &str, inputs: &[&str]| {
        w.record_data(light, light, id, "vehicle-count", "traffic-light-1", inputs)
            .unwrap();
    };
    record(&mut w, "d0", &[]);
    record(&mut w, "d1", &["d0"]);
    record(&mut w, "d2", &["d0"]);
    record(&mut w, "d3", &["d1", "d2"]);
    record(&mut w, "d4", &["d3"]);
    record(&mut w, "d5", &["d3"]);
    record(&mut w, "d6", &["d4", "d5"]);
    w.exec(id("org1", "orchestrator"), "k1", "d0").unwrap();
    let analyser = id("org1", "analyser");
    w.record_data(analyser, analyser, "d7", "timing-plan", "analyser", &["d0"])
        .unwrap();
    w
}

/// Page through a lineage; every part within `limit` nodes. Returns the parts.
fn pages(w: &mut World, query: Value, limit: usize) -> Vec<Value> {
    let mut parts: Vec<Value> = Vec::new();
    let mut bookmark = String::new();
    loop {
        let mut q = query.clone();
        q["limit"] = json!(limit);
        q["fan_out"] = json!(1);
        if !bookmark.is_empty() {
            q["bookmark"] = json!(bookmark);
        }
        let part = w.query(auditor(), "GetLineage", q).unwrap();
        let nodes = part["nodes"].as_object().unwrap();
        assert!(nodes.len() <= limit, "a part of {} nodes", nodes.len());
        // Every relation names nodes of its own part.
        for r in part["relations"].as_array().unwrap() {
            for end in [&r["from"], &r["to"]] {
                let end = end.as_str().unwrap();
                assert!(
                    nodes.contains_key(end) || r["tx_id"] == "" || !is_entity(w, end),
                    "{r} names {end}, not in its part"
                );
            }
        }
        bookmark = part["bookmark"].as_str().unwrap_or_default().to_owned();
        parts.push(part);
        if bookmark.is_empty() {
            return parts;
        }
        assert!(parts.len() < 200, "paging does not end");
    }
}

fn is_entity(w: &mut World, id: &str) -> bool {
    w.query(auditor(), "GetEntity", json!({ "id": id })).is_ok()
}

#[test]
fn paging_walks_every_node_once_and_the_parts_make_the_whole_lineage() {
    let mut w = dag();
    for (root, direction) in [
        ("d0", "down"),
        ("d6", "up"),
        ("d3", "both"),
        ("traffic-light-1", "both"),
    ] {
        let query = json!({ "id": root, "direction": direction });
        let whole = w.query(auditor(), "GetLineage", query.clone()).unwrap();
        assert!(whole.get("truncated").is_none(), "{whole:#}");
        assert!(whole.get("bookmark").is_none());
        let parts = pages(&mut w, query, 8);
        assert!(
            parts.len() >= 3,
            "{root} {direction}: {} parts",
            parts.len()
        );

        let mut nodes = BTreeMap::new();
        let mut relations = BTreeSet::new();
        // Relations only the walk of a data item produces: each must come exactly once.
        let mut walked: BTreeMap<String, usize> = BTreeMap::new();
        for part in &parts {
            for (id, node) in part["nodes"].as_object().unwrap() {
                nodes.insert(id.clone(), node.clone());
            }
            for r in part["relations"].as_array().unwrap() {
                relations.insert(r.to_string());
                if ["wasDerivedFrom", "used", "wasGeneratedBy"]
                    .contains(&r["relation"].as_str().unwrap())
                {
                    *walked.entry(r.to_string()).or_default() += 1;
                }
            }
        }
        let whole_nodes: BTreeMap<String, Value> = whole["nodes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let whole_relations: BTreeSet<String> = whole["relations"]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        assert_eq!(nodes, whole_nodes, "{root} {direction}: nodes");
        assert_eq!(relations, whole_relations, "{root} {direction}: relations");
        for (r, n) in walked {
            assert_eq!(n, 1, "{root} {direction}: {r} in {n} parts");
        }
    }
}

#[test]
fn a_garbled_or_forged_bookmark_is_refused_naming_bookmark() {
    use base64::Engine;
    let mut w = dag();
    let encode = |v: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    };
    let first = w
        .query(
            auditor(),
            "GetLineage",
            json!({ "id": "d0", "direction": "down", "limit": 5, "fan_out": 1 }),
        )
        .unwrap();
    let real = first["bookmark"].as_str().unwrap().to_owned();
    assert!(!real.is_empty());
    let frontier = |queue: Value| {
        encode(json!({ "root": "d0", "direction": "down", "depth": 8, "queue": queue, "seen": "" }))
    };
    let cases = [
        ("not base64!".to_owned(), "not unpadded base64url"),
        (encode(json!({ "hello": 1 })), "is not a lineage bookmark"),
        (format!("{}x", &real[..real.len() - 1]), "bookmark"),
        // Another query's bookmark.
        (real.clone(), "continues another query"),
        // A position outside the index it claims to continue (would read other keys).
        (
            frontier(json!([{ "id": "d0", "level": 0, "step": "users", "at": "\u{10FFFF}" }])),
            "outside the step",
        ),
        (
            frontier(json!([{ "id": "d0", "level": 9, "step": "down" }])),
            "beyond depth 8",
        ),
        (
            frontier(json!([{ "id": "no/such", "level": 0, "step": "down" }])),
            "bookmark",
        ),
    ];
    for (i, (bookmark, fragment)) in cases.iter().enumerate() {
        let root = if i == 3 { "d1" } else { "d0" };
        let e = w
            .query(
                auditor(),
                "GetLineage",
                json!({ "id": root, "direction": "down", "bookmark": bookmark }),
            )
            .unwrap_err();
        assert_eq!(e.status(), 400, "case {i}: {e}");
        let text = e.to_string();
        assert!(text.contains("bookmark"), "case {i}: {text}");
        assert!(
            text.contains(fragment),
            "case {i}: {text} should say {fragment:?}"
        );
    }
    // Out-of-range bounds are refused by name too.
    for (arg, fragment) in [
        (
            json!({ "id": "d0", "fan_out": 0 }),
            "fan_out must be 1 to 1000",
        ),
        (
            json!({ "id": "d0", "fan_out": 1001 }),
            "fan_out must be 1 to 1000",
        ),
        (json!({ "id": "d0", "limit": 0 }), "limit must be 1 to 2000"),
        (json!({ "id": "d0", "limit": 2001 }), "at most 2000 nodes"),
    ] {
        let e = w.query(auditor(), "GetLineage", arg).unwrap_err();
        assert_eq!(e.status(), 400, "{e}");
        assert!(e.to_string().contains(fragment), "{e}");
    }
}

#[test]
fn a_truncated_prov_export_says_it_is_partial_and_reads_back_with_python_prov() {
    let mut w = dag();
    let whole = w
        .query(
            auditor(),
            "ExportProv",
            json!({ "id": "d0", "direction": "down" }),
        )
        .unwrap();
    assert!(
        whole["entity"].get("tom:lineage.d0").is_none(),
        "a complete lineage is not marked partial"
    );
    let part = w
        .query(
            auditor(),
            "ExportProv",
            json!({ "id": "d0", "direction": "down", "limit": 6, "fan_out": 1 }),
        )
        .unwrap();
    let marker = &part["entity"]["tom:lineage.d0"];
    assert_eq!(marker["tom:truncated"], true, "{part:#}");
    assert_eq!(marker["prov:type"]["$"], "tom:PartialLineage");
    let lineage = w
        .query(
            auditor(),
            "GetLineage",
            json!({ "id": "d0", "direction": "down", "limit": 6, "fan_out": 1 }),
        )
        .unwrap();
    assert_eq!(marker["tom:bookmark"], lineage["bookmark"]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.prov.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&part).unwrap()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/tools/prov_counts.py"
    );
    let output = Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to check the PROV export ({e}); run scripts/setup/05-python-prov.sh"));
    assert!(
        output.status.success(),
        "the Python prov package could not read the partial PROV-JSON:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        read["elements"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "tom:lineage.d0"),
        "{read:#}"
    );
}

#[test]
fn a_device_with_many_readings_pages_to_the_end_with_bookmarks_that_fit_a_url() {
    let n = 1200;
    let mut w = World::with_orgs();
    let light = id("org1", "traffic-light-1");
    w.identify_device("traffic-light-1", light, "sensor")
        .unwrap();
    for i in 0..n {
        w.record_data(
            light,
            light,
            &format!("reading-{i:05}"),
            "count",
            "traffic-light-1",
            &[],
        )
        .unwrap();
    }
    let mut generated = BTreeSet::new();
    let mut parts = 0;
    let mut longest = 0;
    let mut bookmark = String::new();
    loop {
        // The widest answer a caller may ask for: the bookmark, not the limit, stops it.
        let mut q =
            json!({ "id": "traffic-light-1", "direction": "down", "limit": 2000, "fan_out": 1000 });
        if !bookmark.is_empty() {
            q["bookmark"] = json!(bookmark);
        }
        let part = w.query(auditor(), "GetLineage", q).unwrap();
        parts += 1;
        for r in relations_of(&part, "wasGeneratedBy") {
            assert!(
                generated.insert(r["from"].as_str().unwrap().to_owned()),
                "{r} twice"
            );
        }
        bookmark = part["bookmark"].as_str().unwrap_or_default().to_owned();
        longest = longest.max(bookmark.len());
        if bookmark.is_empty() {
            break;
        }
        assert!(parts < 100, "paging does not end");
    }
    eprintln!("{n} readings: {parts} parts, longest bookmark {longest} bytes");
    assert_eq!(generated.len(), n);
    assert!(parts >= 2, "{parts} parts");
    assert!(
        longest <= tom_contract::queries::MAX_LINEAGE_BOOKMARK,
        "a bookmark of {longest} bytes"
    );
}

/// Latency of bounded lineage on a ledger with many records (issue 13's figures; run in release:
/// `cargo test --release -p tom-contract --test lineage_paging -- --ignored --nocapture`).
/// The in-memory state is a B-tree, so a walk's cost grows with the log of the ledger's size;
/// what the walk reads is what it answers.
#[test]
#[ignore = "a measurement, not a check: run in release with --ignored"]
fn lineage_latency_on_a_large_ledger() {
    use std::time::Instant;
    let filler: usize = std::env::var("TOM_LINEAGE_FILLER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut w = popular(1000);
    let light = id("org1", "traffic-light-1");
    w.record_data(light, light, "chain-00", "count", "traffic-light-1", &[])
        .unwrap();
    for i in 1..=25 {
        let input = format!("chain-{:02}", i - 1);
        w.record_data(
            light,
            light,
            &format!("chain-{i:02}"),
            "count",
            "traffic-light-1",
            &[&input],
        )
        .unwrap();
    }
    for i in 0..filler {
        w.record_data(
            light,
            light,
            &format!("filler-{i:07}"),
            "count",
            "traffic-light-1",
            &[],
        )
        .unwrap();
    }
    let keys = w.ledger.dump().count();
    let records = w
        .ledger
        .dump()
        .filter(|(k, _)| k.starts_with("\u{0}tom.record\u{0}"))
        .count();
    let mut measure = |name: &str, arg: Value| {
        let mut times = Vec::new();
        let mut nodes = 0;
        for _ in 0..200 {
            let started = Instant::now();
            let answer = w.query(auditor(), "GetLineage", arg.clone()).unwrap();
            times.push(started.elapsed());
            nodes = answer["nodes"].as_object().unwrap().len();
        }
        times.sort();
        let (_, reads) = counted(&mut w, "GetLineage", arg);
        eprintln!(
            "{name}: {nodes} nodes, {reads} reads, p50 {:.2} ms, p99 {:.2} ms",
            times[100].as_secs_f64() * 1e3,
            times[197].as_secs_f64() * 1e3
        );
    };
    eprintln!("ledger: {keys} keys, {records} records");
    measure(
        "up depth 20",
        json!({ "id": "chain-25", "direction": "up", "depth": 20 }),
    );
    measure(
        "up depth 5",
        json!({ "id": "chain-25", "direction": "up", "depth": 5 }),
    );
    measure(
        "down from the device (fan_out 100)",
        json!({ "id": "traffic-light-1", "direction": "down", "depth": 1 }),
    );
    measure(
        "down from an item with 1000 users (fan_out 100)",
        json!({ "id": "count-1", "direction": "down" }),
    );
}

#[test]
fn a_wide_level_whose_items_go_on_still_pages_in_a_few_parts() {
    // 500 readings, each used by the analyser under its own contract: every reading leaves a
    // step (its users) in the frontier, more than one bookmark holds.
    let n = 500;
    let mut w = World::with_orgs();
    let light = id("org1", "traffic-light-1");
    w.identify_device("traffic-light-1", light, "sensor")
        .unwrap();
    w.identify_device("edge-node-1", id("org1", "edge-node-1"), "edge-node")
        .unwrap();
    w.identify_container("analyser", Some(id("org1", "analyser")))
        .unwrap();
    w.place("analyser", "edge-node-1").unwrap();
    for i in 0..n {
        w.define_contract(
            &format!("k-{i:04}"),
            "analyser",
            json!([{ "kind": "count", "source": "traffic-light-1" }]),
            json!([]),
        )
        .unwrap();
        w.record_data(
            light,
            light,
            &format!("r-{i:04}"),
            "count",
            "traffic-light-1",
            &[],
        )
        .unwrap();
        w.exec(
            id("org1", "orchestrator"),
            &format!("k-{i:04}"),
            &format!("r-{i:04}"),
        )
        .unwrap();
    }
    let mut used = BTreeSet::new();
    let mut parts = 0;
    let mut bookmark = String::new();
    loop {
        let mut q = json!({ "id": "traffic-light-1", "direction": "down", "depth": 2, "limit": 2000, "fan_out": 1000 });
        if !bookmark.is_empty() {
            q["bookmark"] = json!(bookmark);
        }
        let part = w.query(auditor(), "GetLineage", q).unwrap();
        parts += 1;
        for r in relations_of(&part, "used") {
            assert!(
                used.insert(r["tx_id"].as_str().unwrap().to_owned()),
                "{r} twice"
            );
        }
        bookmark = part["bookmark"].as_str().unwrap_or_default().to_owned();
        assert!(bookmark.len() <= tom_contract::queries::MAX_LINEAGE_BOOKMARK);
        if bookmark.is_empty() {
            break;
        }
        assert!(
            parts < 20,
            "{parts} parts and not done: the frontier does not shrink"
        );
    }
    eprintln!("{n} used readings: {parts} parts");
    assert_eq!(used.len(), n);
    // Each part stops when its bookmark is full (3 KiB of frontier); the next runs the
    // waiting users first (shrinking the frontier) and then more of the readings, so 500 used
    // readings take about a dozen parts. (Running the readings first would let each later part
    // add only one reading to a full bookmark: hundreds of parts.)
    assert!(parts <= 12, "{parts} parts");
}
