//! Evidence bundles from the embedded ledger: a bundle verifies offline, and each single-field
//! or single-byte tampering is caught by the check that names it.

mod embedded_common;

use base64::Engine;
use embedded_common::*;
use serde_json::{json, Value};
use tom_contract::requests::{Direction, LineageQuery};
use tom_gateway::evidence::{self, Options};
use tom_gateway::ledger::embedded::codec::{sha256, BlockHeader};
use tom_gateway::ledger::embedded::node_key::NodeKey;
use tom_gateway::ledger::embedded::{EmbeddedLedger, EmbeddedOptions};
use tom_gateway::ledger::Ledger;

fn b64d(text: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text.as_str().unwrap())
        .unwrap()
}

fn sha256_tag(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha256(bytes)))
}

fn data_request(id: &str, kind: &str, generator: &str, signer: &str, inputs: &[&str]) -> Value {
    let signer = tom_fixtures::identity("org1", signer);
    let request = tom_contract::requests::RecordData {
        data_id: id.into(),
        kind: kind.into(),
        hash: sha256_tag(id.as_bytes()),
        size: 12,
        location: format!("file:///data/{id}"),
        generated_by: generator.into(),
        derived_from: inputs.iter().map(|s| (*s).to_owned()).collect(),
        claim: Default::default(),
    }
    .sign(tom_contract::simulation::DEFAULT_CHANNEL, "", |m| {
        signer.sign(m)
    })
    .unwrap();
    serde_json::to_value(request).unwrap()
}

async fn submit(ledger: &dyn Ledger, who: &str, function: &str, arg: Value) {
    ledger
        .submit(&signer("org1", who), function, &bytes(&arg))
        .await
        .unwrap_or_else(|e| panic!("{function}: {e}"));
}

/// The smart-city chain: a traffic light's count, used by an analyser placed on it under a
/// contract, which derives a plan from it.
async fn scenario(ledger: &dyn Ledger) {
    register_org1(ledger).await;
    submit(
        ledger,
        "orchestrator",
        "IdentifyDevice",
        identify_request("light-1", "traffic-light-1", "n-1"),
    )
    .await;
    let analyser = tom_fixtures::identity("org1", "analyser");
    let container = tom_contract::requests::IdentifyContainer {
        container_id: "analyser".into(),
        org: "Org1MSP".into(),
        image: "city/analyser:1".into(),
        digest: sha256_tag(b"image"),
        publisher_signature: None,
        certificate: None,
        nonce: None,
        proof: None,
    }
    .with_workload_identity(
        analyser.cert_pem,
        "n-analyser",
        tom_contract::simulation::DEFAULT_CHANNEL,
        |m| analyser.sign(m),
    )
    .unwrap();
    submit(
        ledger,
        "orchestrator",
        "IdentifyContainer",
        serde_json::to_value(container).unwrap(),
    )
    .await;
    submit(
        ledger,
        "orchestrator",
        "PlaceContainer",
        json!({ "container_id": "analyser", "device_id": "light-1" }),
    )
    .await;
    let deadline =
        tom_contract::Timestamp::from_seconds(tom_gateway::ledger::memory::now().seconds + 3600)
            .to_rfc3339();
    submit(ledger, "orchestrator", "DefineContract", json!({ "contract_id": "analyse", "contractor": "analyser", "uses": [{ "kind": "count", "source": "light-1" }], "generates": [{ "kind": "plan" }], "deadline": deadline })).await;
    submit(
        ledger,
        "traffic-light-1",
        "RecordData",
        data_request("count-1", "count", "light-1", "traffic-light-1", &[]),
    )
    .await;
    submit(
        ledger,
        "orchestrator",
        "ExecContract",
        json!({ "contract_id": "analyse", "data_id": "count-1" }),
    )
    .await;
    submit(
        ledger,
        "analyser",
        "RecordData",
        data_request("plan-1", "plan", "analyser", "analyser", &["count-1"]),
    )
    .await;
    // Unrelated later activity, so the proof has blocks after the lineage's.
    submit(
        ledger,
        "orchestrator",
        "IdentifyDevice",
        identify_request("gateway-1", "roadside-gateway-1", "n-2"),
    )
    .await;
}

struct Fixture {
    dir: tempfile::TempDir,
    bundle: Value,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ledger = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap();
    scenario(&ledger).await;
    let query = LineageQuery {
        id: "plan-1".into(),
        direction: Direction::Up,
        depth: None,
        ..LineageQuery::default()
    };
    let bundle = ledger
        .evidence(&signer("org1", "auditor"), &query)
        .await
        .unwrap();
    // Downstream and both ways, from a device and from a data item, verify too (the replay
    // covers the range scans those walks make).
    for (id, direction) in [
        ("light-1", Direction::Both),
        ("count-1", Direction::Down),
        ("analyser", Direction::Up),
    ] {
        let query = LineageQuery {
            id: id.into(),
            direction,
            depth: None,
            ..LineageQuery::default()
        };
        let bundle = ledger
            .evidence(&signer("org1", "auditor"), &query)
            .await
            .unwrap();
        let bytes = serde_json::to_vec(&bundle).unwrap();
        evidence::verify(&bytes, &Options::default())
            .unwrap_or_else(|f| panic!("{id} {direction:?}: {f}"));
    }
    // A lineage cut short by its bounds verifies too: the replay reads the same index pages
    // (including the entry that told the walk to stop) and gives the same partial answer.
    let query = LineageQuery {
        id: "light-1".into(),
        direction: Direction::Both,
        limit: Some(4),
        fan_out: Some(1),
        ..LineageQuery::default()
    };
    let partial = ledger
        .evidence(&signer("org1", "auditor"), &query)
        .await
        .unwrap();
    let lineage = serde_json::to_value(&partial.lineage).unwrap();
    assert_eq!(lineage["truncated"], true, "{lineage:#}");
    evidence::verify(&serde_json::to_vec(&partial).unwrap(), &Options::default())
        .unwrap_or_else(|f| panic!("truncated lineage: {f}"));
    ledger.shutdown();
    Fixture {
        dir,
        bundle: serde_json::to_value(bundle).unwrap(),
    }
}

fn check(bundle: &Value, options: &Options) -> Result<evidence::Verified, evidence::Failure> {
    evidence::verify(&serde_json::to_vec(bundle).unwrap(), options)
}

#[track_caller]
fn rejected(bundle: &Value, options: &Options) -> evidence::Failure {
    match check(bundle, options) {
        Ok(v) => panic!("a tampered bundle verified: {v}"),
        Err(f) => f,
    }
}

#[track_caller]
fn assert_caught(bundle: &Value, check_name: &str, needle: &str) {
    let failure = rejected(bundle, &Options::default());
    assert_eq!(failure.check, check_name, "{failure}");
    assert!(
        failure.detail.contains(needle),
        "{failure} should mention {needle:?}"
    );
}

fn tx_index_of(bundle: &Value, kind: &str) -> usize {
    bundle["records"]
        .as_array()
        .unwrap()
        .iter()
        .position(|r| r["kind"] == kind)
        .unwrap()
}

/// A malicious node operator: change a transaction's bytes, then fix every hash up to the
/// newest block and re-sign it with the node's own key.
fn forge(dir: &std::path::Path, bundle: &mut Value, tx: usize, change: impl FnOnce(&mut Vec<u8>)) {
    let entry = &mut bundle["ledger"]["transactions"][tx];
    let mut bytes = b64d(&entry["bytes"]);
    change(&mut bytes);
    entry["bytes"] = json!(b64(&bytes));
    let (block, index) = (
        entry["block"].as_u64().unwrap(),
        entry["index"].as_u64().unwrap() as usize,
    );
    let key = NodeKey::load_or_create(dir).unwrap();
    let blocks = bundle["ledger"]["blocks"].as_array_mut().unwrap();
    let mut previous: Option<[u8; 32]> = None;
    let last = blocks.len() - 1;
    for (i, b) in blocks.iter_mut().enumerate() {
        let mut header = BlockHeader::decode(&b64d(&b["header"])).unwrap();
        if header.number == block {
            header.tx_hashes[index] = sha256(&bytes);
            header.data_hash = BlockHeader::data_hash_of(&header.tx_hashes);
        }
        if let Some(p) = previous {
            header.previous_hash = p;
        }
        let encoded = header.encode();
        previous = Some(sha256(&encoded));
        b["header"] = json!(b64(&encoded));
        if i == last {
            b["signature"] = json!(b64(&key.sign(&encoded).unwrap()));
        }
    }
}

#[tokio::test]
async fn a_bundle_verifies_offline_and_names_what_it_proves() {
    let f = fixture().await;
    let verified = check(&f.bundle, &Options::default()).unwrap();
    assert_eq!(verified.subject, "plan-1");
    let kinds: Vec<&str> = f.bundle["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "PROV-ID-create",
        "ORCHESTRATE",
        "CONTRACT",
        "PROV-DATA",
        "PROV-ORCH",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert!(!kinds.contains(&"ORG") || verified.records == kinds.len());
    assert_eq!(verified.records, verified.transactions);
    assert_eq!(verified.claims, 2, "both data claims checked: {verified}");
    assert!(verified.agents.contains("Org1MSP/traffic-light-1"));
    assert!(!verified.anchored);
    // The newest block is the one after the lineage (light-2's join).
    let tip = f.bundle["ledger"]["blocks"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["number"]
        .as_u64()
        .unwrap();
    assert_eq!(verified.tip_block, tip);
    assert!(tip > verified.first_block);
    // The PROV-JSON travels with it.
    assert!(
        f.bundle["prov"]["entity"]["tom:plan-1"].is_object(),
        "{}",
        f.bundle["prov"]
    );

    // Anchored in the organisation's CA: passes; in another organisation's: named.
    let org1 = Options {
        trust: vec![tom_fixtures::org("org1").ca_cert_pem.to_owned()],
        node_key_pem: Some(std::fs::read_to_string(f.dir.path().join("node.pub.pem")).unwrap()),
    };
    assert!(check(&f.bundle, &org1).unwrap().anchored);
    let org2 = Options {
        trust: vec![tom_fixtures::org("org2").ca_cert_pem.to_owned()],
        node_key_pem: None,
    };
    let failure = rejected(&f.bundle, &org2);
    assert_eq!(failure.check, "creator-trust", "{failure}");
}

#[tokio::test]
async fn every_tampering_is_caught_and_named() {
    let f = fixture().await;
    let good = &f.bundle;
    let data_tx = tx_index_of(good, "PROV-DATA");

    // 1. Record content.
    let mut b = good.clone();
    b["records"][data_tx]["body"]["hash"] = json!(sha256_tag(b"forged"));
    assert_caught(&b, "record", "is not what the transaction wrote");

    // 2. A removed record.
    let mut b = good.clone();
    b["records"].as_array_mut().unwrap().remove(data_tx);
    assert_caught(&b, "record", "missing");

    // 3. One byte of a transaction.
    let mut b = good.clone();
    let mut bytes = b64d(&b["ledger"]["transactions"][data_tx]["bytes"]);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    b["ledger"]["transactions"][data_tx]["bytes"] = json!(b64(&bytes));
    assert_caught(&b, "transaction-hash", "do not hash");

    // 4. The node's signature on the newest block.
    let mut b = good.clone();
    let blocks = b["ledger"]["blocks"].as_array_mut().unwrap();
    let tip = blocks.last_mut().unwrap();
    let mut signature = b64d(&tip["signature"]);
    let last = signature.len() - 1;
    signature[last] ^= 1;
    tip["signature"] = json!(b64(&signature));
    assert_caught(&b, "tip-signature", "does not verify");

    // 5. A block's previous-hash link.
    let mut b = good.clone();
    let mut header = b64d(&b["ledger"]["blocks"][1]["header"]);
    header[5 + 8] ^= 1;
    b["ledger"]["blocks"][1]["header"] = json!(b64(&header));
    assert_caught(&b, "block-link", "previous hash");

    // 6. A transaction hash listed in a header.
    let mut b = good.clone();
    let mut header = b64d(&b["ledger"]["blocks"][0]["header"]);
    let n = header.len();
    header[n - 1] ^= 1;
    b["ledger"]["blocks"][0]["header"] = json!(b64(&header));
    assert_caught(&b, "data-hash", "data hash");

    // 7. A block removed from the chain.
    let mut b = good.clone();
    b["ledger"]["blocks"].as_array_mut().unwrap().remove(1);
    assert_caught(&b, "block-sequence", "gap");

    // 8. A swapped node key (another node's): the signature no longer verifies; a pinned key
    // names the swap itself.
    let other = tempfile::tempdir().unwrap();
    let other_key = NodeKey::load_or_create(other.path()).unwrap();
    let mut b = good.clone();
    b["ledger"]["node_public_key_pem"] = json!(other_key.public_key_pem());
    assert_caught(&b, "tip-signature", "does not verify");
    let pinned = Options {
        node_key_pem: Some(
            good["ledger"]["node_public_key_pem"]
                .as_str()
                .unwrap()
                .to_owned(),
        ),
        ..Options::default()
    };
    assert_eq!(rejected(&b, &pinned).check, "node-key");

    // 9. The lineage document.
    let mut b = good.clone();
    b["lineage"]["nodes"]["count-1"]["entity"]["location"] = json!("file:///elsewhere");
    assert_caught(&b, "lineage", "/nodes/count-1/entity/location");

    // 10. The PROV-JSON.
    let mut b = good.clone();
    b["prov"]["entity"]["tom:plan-1"]["tom:hash"] = json!(sha256_tag(b"other"));
    assert_caught(&b, "prov", "tom:plan-1");

    // 11. A state value attributed to another transaction.
    let mut b = good.clone();
    let state = b["state"].as_array_mut().unwrap();
    let entry = state
        .iter_mut()
        .find(|e| e["key"].as_str().unwrap().contains("plan-1"))
        .unwrap();
    entry["tx"] = json!(entry["tx"].as_u64().unwrap() + 7);
    assert_caught(&b, "state", "plan-1");

    // 12. A removed transaction (with its record).
    let mut b = good.clone();
    b["ledger"]["transactions"]
        .as_array_mut()
        .unwrap()
        .remove(data_tx);
    b["records"].as_array_mut().unwrap().remove(data_tx);
    let failure = rejected(&b, &Options::default());
    assert!(["state", "lineage"].contains(&failure.check), "{failure}");

    // 13. A swapped certificate in a record's agent.
    let mut b = good.clone();
    b["records"][data_tx]["agent"]["certificate_sha256"] = json!("00".repeat(32));
    assert_caught(&b, "record", "agent/certificate_sha256");

    // 14. An unknown format version.
    let mut b = good.clone();
    b["version"] = json!(2);
    assert_caught(&b, "format", "version");

    // 15-17. The node itself forges: it cannot make a creator's signature, so changing the
    // signed proposal or the signature is named even with every hash and the tip re-signed;
    // a transaction committed invalid cannot be passed off as valid either.
    let mut b = good.clone();
    forge(f.dir.path(), &mut b, data_tx, |bytes| {
        // The proposal's last byte (in the argument): `TOMT` 1, u32 length, proposal.
        let length = u32::from_be_bytes(bytes[5..9].try_into().unwrap()) as usize;
        bytes[9 + length - 1] ^= 1;
    });
    assert_caught(&b, "creator-signature", "does not verify");
    let mut b = good.clone();
    forge(f.dir.path(), &mut b, data_tx, |bytes| {
        let last = bytes.len() - 1;
        bytes[last] = 11;
    });
    assert_caught(&b, "validation-code", "MVCC_READ_CONFLICT");
    // And the forged chain itself verifies up to that point: the re-signed tip is accepted.
    let mut b = good.clone();
    forge(f.dir.path(), &mut b, data_tx, |_| {});
    check(&b, &Options::default()).unwrap();
}

#[tokio::test]
async fn the_rest_route_serves_a_bundle_that_verifies_and_the_report_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = std::sync::Arc::new(
        EmbeddedLedger::open(&dir.path().join("ledger"), EmbeddedOptions::default()).unwrap(),
    );
    scenario(ledger.as_ref()).await;
    let mut store = tom_gateway::identities::IdentityStore::open(dir.path()).unwrap();
    let auditor = tom_fixtures::identity("org1", "auditor");
    store
        .add(
            "auditor",
            auditor.msp_id,
            auditor.cert_pem,
            auditor.key_pkcs8_pem,
        )
        .unwrap();
    store
        .add_token("auditor", "auditor-token-0123456789")
        .unwrap();
    let store = tom_gateway::identities::IdentityStore::open(dir.path()).unwrap();
    let running = tom_gateway::app::spawn(
        "127.0.0.1:0",
        tom_gateway::app::AppState::new(ledger.clone(), store),
    )
    .await
    .unwrap();
    let response = reqwest::Client::new()
        .get(format!(
            "{}/v1/evidence/plan-1?direction=up&depth=4",
            running.url()
        ))
        .bearer_auth("auditor-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"plan-1.evidence.json\""
    );
    let bytes = response.bytes().await.unwrap();
    let verified = evidence::verify(&bytes, &Options::default()).unwrap();
    assert_eq!(verified.subject, "plan-1");

    // An unknown entity is a 404, not a bundle.
    let missing = reqwest::Client::new()
        .get(format!("{}/v1/evidence/nothing-here", running.url()))
        .bearer_auth("auditor-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // The report, from the same bundle.
    let bundle: evidence::Bundle = serde_json::from_slice(&bytes).unwrap();
    let mut facts = tom_gateway::report::Facts {
        subject: "plan-1".into(),
        entity: bundle.lineage["nodes"]["plan-1"]["entity"].clone(),
        lineage: bundle.lineage.clone(),
        verdict: Ok(verified.to_string()),
        ..Default::default()
    };
    for r in &bundle.records {
        facts
            .records
            .insert(r["tx_id"].as_str().unwrap().to_owned(), r.clone());
    }
    let text = tom_gateway::report::render_text(&facts);
    assert!(text.starts_with("INCIDENT REPORT: plan-1\n"), "{text}");
    assert!(
        text.contains("plan-1 was generated by analyser (PROV-DATA by Org1MSP/analyser"),
        "{text}"
    );
    assert!(text.contains("analyser ran on light-1"), "{text}");
    assert!(text.contains("plan-1 was derived from count-1"), "{text}");
    assert!(
        text.contains("evidence verified: lineage of plan-1"),
        "{text}"
    );
    assert!(
        text.lines().all(|l| l.chars().count() <= 100),
        "wrapped to 100 columns:\n{text}"
    );
    let failed = tom_gateway::report::Facts {
        verdict: Err("evidence rejected: record: forged".into()),
        ..facts
    };
    assert!(tom_gateway::report::render_text(&failed).contains("NOT VERIFIED: evidence rejected"));
    running.stop().await.unwrap();
    ledger.shutdown();
}

#[tokio::test]
async fn a_back_end_without_evidence_says_so() {
    let ledger = tom_gateway::ledger::memory::InMemoryLedger::new();
    let query = LineageQuery {
        id: "x".into(),
        direction: Direction::Up,
        depth: None,
        ..LineageQuery::default()
    };
    match ledger.evidence(&signer("org1", "auditor"), &query).await {
        Err(tom_gateway::ledger::LedgerError::Rejected { status, message }) => {
            assert_eq!(status, 400);
            assert!(message.contains("not available"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A Fabric bundle without its proof is refused at the format check, naming what is missing.
    let bundle = json!({
        "format": "tom-evidence", "version": 1, "subject": "x", "created": "2026-01-01T00:00:00Z",
        "query": { "argument": { "id": "x", "direction": "up" }, "timestamp": "2026-01-01T00:00:00Z",
                   "creator_msp_id": "Org1MSP", "creator_certificate_pem": "" },
        "lineage": {}, "prov": {}, "records": [], "state": [],
        "ledger": { "kind": "fabric", "channel": "tom" }
    });
    let failure = rejected(&bundle, &Options::default());
    assert_eq!(failure.check, "format");
    assert!(
        failure.detail.contains("missing field `chaincode`"),
        "{failure}"
    );
}
