//! Hostile input is refused with 400 naming the field and the rule, never a ledger error (500)
//! and never stored: reserved characters in ids, `.`/`..`, repeated JSON keys, oversized or
//! control-character free text; and a page of records stays within its byte budget.

mod common;

use common::*;
use serde_json::json;

fn orchestrator() -> &'static tom_fixtures::Identity {
    id("org1", "orchestrator")
}

fn auditor() -> &'static tom_fixtures::Identity {
    id("org1", "auditor")
}

#[track_caller]
fn query_refused(w: &mut World, function: &str, arg: serde_json::Value, fragments: &[&str]) {
    let e = w.query(auditor(), function, arg).unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
    for f in fragments {
        assert!(e.to_string().contains(f), "{e} should contain {f:?}");
    }
}

#[test]
fn reserved_characters_in_ids_are_bad_arguments_not_ledger_errors() {
    let mut w = World::with_orgs();
    query_refused(
        &mut w,
        "GetRecord",
        json!({ "id": "\u{0}" }),
        &["id \"\\0\" contains '\\0'"],
    );
    query_refused(
        &mut w,
        "QueryRecords",
        json!({ "agent": "a\u{10FFFF}" }),
        &["agent", "<msp id>/<common name>"],
    );
    query_refused(
        &mut w,
        "QueryRecords",
        json!({ "agent": "Org1MSP/x\u{0}" }),
        &["agent"],
    );
    for function in [
        "GetEntity",
        "GetHistory",
        "GetOrg",
        "GetLineage",
        "ExportProv",
    ] {
        query_refused(&mut w, function, json!({ "id": "x\u{10FFFF}" }), &["id"]);
    }
    let device = id("org1", "edge-node-1");
    let before = w.record_count();
    let r = w.submit(
        orchestrator(),
        "IdentifyDevice",
        World::device_request("edge-1", device, "sensor", "n\u{10FFFF}"),
    );
    assert_rejected(r, 400, &["nonce", "^[A-Za-z0-9]"]);
    assert_eq!(w.record_count(), before);
}

#[test]
fn dot_ids_cannot_join() {
    let mut w = World::with_orgs();
    for bad in [".", "..", "-x", "_x"] {
        let r = w.submit(
            orchestrator(),
            "IdentifyContainer",
            World::container_request(bad, None),
        );
        assert_rejected(r, 400, &["container_id", "^[A-Za-z0-9]"]);
    }
    w.identify_container("analyser", None).unwrap();
}

#[test]
fn repeated_json_keys_are_refused() {
    let mut w = World::with_orgs();
    let arg = br#"{"id":"edge-1","id":"edge-2"}"#;
    let r = w.submit_raw(orchestrator(), "TerminateDevice", &[arg]);
    assert_rejected(r, 400, &["duplicate key \"id\""]);
    let o = tom_fixtures::org("org1");
    let arg = format!(
        r#"{{"msp_id":"Org1MSP","ca_certificates":[{ca}],"policy":{{"publishers":{{"p":{ca},"p":{ca}}}}}}}"#,
        ca = serde_json::to_string(o.ca_cert_pem).unwrap()
    );
    let r = w.submit_raw(id("org1", "admin"), "RegisterOrg", &[arg.as_bytes()]);
    assert_rejected(r, 400, &["duplicate key \"p\""]);
}

#[test]
fn free_text_is_bounded_in_bytes_and_characters() {
    let mut w = World::with_orgs();
    let before = w.record_count();
    let big = "x".repeat(900_000);
    let cases = [
        (
            json!({ "service": "s", "description": "d", "action_taken": big }),
            "action_taken is 900000 bytes; at most 1024",
        ),
        (
            json!({ "service": "s", "description": "d", "action_taken": "a\u{0}\u{1b}[2J" }),
            "action_taken contains '\\0'",
        ),
        (
            json!({ "service": "s".repeat(257), "description": "d" }),
            "service is 257 bytes; at most 256",
        ),
        (
            json!({ "service": "s", "description": "line\nbreak" }),
            "description contains '\\n'",
        ),
    ];
    for (arg, fragment) in cases {
        let r = w.submit(orchestrator(), "RecordDrift", arg);
        assert_rejected(r, 400, &[fragment]);
    }
    let r = w.submit(
        orchestrator(),
        "TerminateDevice",
        json!({ "id": "edge-1", "reason": "r".repeat(1025) }),
    );
    assert_rejected(r, 400, &["reason is 1025 bytes"]);
    let r = w.submit(
        orchestrator(),
        "RecordOutcome",
        json!({ "container_id": "c", "action": "place", "authorising_tx": "tx1", "outcome": "failed", "detail": "d".repeat(4097) }),
    );
    assert_rejected(r, 400, &["detail is 4097 bytes; at most 4096"]);
    let r = w.submit(
        orchestrator(),
        "DefineContract",
        json!({ "contract_id": "k", "contractor": "c", "uses": vec![json!({ "kind": "x" }); 65], "deadline": "2030-01-01T00:00:00Z" }),
    );
    assert_rejected(r, 400, &["uses has 65 entries; at most 64"]);
    assert_eq!(w.record_count(), before, "nothing refused was recorded");
}

#[test]
fn a_page_of_records_stops_at_its_byte_budget_and_resumes_at_its_bookmark() {
    let mut w = World::with_orgs();
    let text = "t".repeat(1000);
    let n = 1200;
    for i in 0..n {
        w.submit(
            orchestrator(),
            "RecordDrift",
            json!({ "service": format!("svc-{i}"), "description": text, "action_taken": text }),
        )
        .unwrap();
    }
    let mut seen = 0usize;
    let mut pages = 0;
    let mut bookmark = String::new();
    loop {
        let page = w
            .query(
                auditor(),
                "QueryRecords",
                json!({ "page_size": 1000, "bookmark": bookmark }),
            )
            .unwrap();
        let bytes = serde_json::to_vec(&page).unwrap().len();
        assert!(
            bytes <= tom_contract::queries::PAGE_BYTES + 64 * 1024,
            "page of {bytes} bytes"
        );
        seen += page["records"].as_array().unwrap().len();
        pages += 1;
        bookmark = page["bookmark"].as_str().unwrap().to_owned();
        if bookmark.is_empty() {
            break;
        }
    }
    assert!(pages >= 3, "{pages} pages");
    // Every record once: the drifts plus the two organisations' registrations.
    assert_eq!(seen, n + 2);
}

#[test]
fn a_lineage_wider_than_its_node_bound_comes_in_parts_and_a_larger_limit_is_refused() {
    let mut w = World::with_orgs();
    let light = id("org1", "traffic-light-1");
    w.identify_device("tl-1", light, "sensor").unwrap();
    w.record_data(light, light, "root", "count", "tl-1", &[])
        .unwrap();
    let wide = tom_contract::queries::MAX_LINEAGE_NODES;
    for i in 0..wide {
        w.record_data(light, light, &format!("d-{i}"), "count", "tl-1", &["root"])
            .unwrap();
    }
    // Asked for more than one answer may hold: refused, with the advice.
    query_refused(
        &mut w,
        "GetLineage",
        json!({ "id": "root", "direction": "down", "depth": 1, "limit": wide + 1 }),
        &[&format!(
            "a lineage answer has at most {wide} nodes; ask for a smaller depth"
        )],
    );
    // Otherwise answered in part: the first part within the bounds, saying so.
    let part = w
        .query(
            auditor(),
            "GetLineage",
            json!({ "id": "root", "direction": "down", "depth": 1 }),
        )
        .unwrap();
    let nodes = part["nodes"].as_object().unwrap().len();
    assert!(
        nodes <= tom_contract::queries::DEFAULT_LINEAGE_LIMIT as usize,
        "{nodes} nodes"
    );
    assert_eq!(part["truncated"], true);
    assert!(!part["bookmark"].as_str().unwrap().is_empty());
    // Upstream of one of them stays small and is answered.
    let lineage = w
        .query(
            auditor(),
            "GetLineage",
            json!({ "id": "d-7", "direction": "up" }),
        )
        .unwrap();
    assert!(lineage["nodes"].as_object().unwrap().len() < 10);
}
