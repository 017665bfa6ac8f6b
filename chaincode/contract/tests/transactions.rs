//! The typed seam: every transaction's response decodes as its `Transaction::Response` and
//! encodes back to the same JSON, and `GetMetadata` describes every transaction with JSON
//! Schemas that resolve.

mod common;

use common::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tom_contract::requests;
use tom_contract::Transaction;

/// Decode `answer` as `T`'s response and check it encodes back to the same JSON.
#[track_caller]
fn check_round_trip<T: Transaction>(answer: &Value)
where
    T::Response: Serialize + DeserializeOwned,
{
    let typed: T::Response = serde_json::from_value(answer.clone())
        .unwrap_or_else(|e| panic!("{} response does not decode: {e}\n{answer:#}", T::NAME));
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        answer,
        "{} response changes on a round trip",
        T::NAME
    );
}

/// A world with a device, a placed container under a contract, data it used, and every
/// record kind but drift and outcome (added below).
fn world() -> World {
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
        json!([{ "kind": "vehicle-count", "source": "traffic-light-1" }]),
        json!([{ "kind": "timing-plan" }]),
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
    w.exec(id("org1", "orchestrator"), "k1", "count-1").unwrap();
    w
}

#[test]
fn every_answer_decodes_as_its_transactions_response_type() {
    let mut w = world();
    let orchestrator = id("org1", "orchestrator");
    let auditor = id("org1", "auditor");
    let place = w.entity("analyser")["placement"]["stamp"]["tx_id"].clone();
    let outcome = w
        .submit(orchestrator, "RecordOutcome", json!({ "container_id": "analyser", "action": "place", "authorising_tx": place, "outcome": "running" }))
        .unwrap();
    check_round_trip::<requests::RecordOutcome>(&outcome);
    let drift = w
        .submit(orchestrator, "RecordDrift", json!({ "service": "svc-analyser", "container_id": "analyser", "description": "stopped", "placement_status": "stopped" }))
        .unwrap();
    check_round_trip::<requests::RecordDrift>(&drift);

    let by_id = |id: &str| json!({ "id": id });
    for entity in ["edge-node-1", "analyser", "count-1", "k1"] {
        let answer = w.query(auditor, "GetEntity", by_id(entity)).unwrap();
        check_round_trip::<requests::GetEntity>(&answer);
        let answer = w.query(auditor, "GetHistory", by_id(entity)).unwrap();
        check_round_trip::<requests::GetHistory>(&answer);
    }
    let answer = w.query(auditor, "GetOrg", by_id("Org1MSP")).unwrap();
    check_round_trip::<requests::GetOrg>(&answer);
    let records = w.query(auditor, "QueryRecords", json!({})).unwrap();
    check_round_trip::<requests::RecordsQuery>(&records);
    let kinds: Vec<&str> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "ORG",
        "PROV-ID-create",
        "ORCHESTRATE",
        "CONTRACT",
        "PROV-DATA",
        "PROV-ORCH",
        "OUTCOME",
        "DRIFT",
    ] {
        assert!(kinds.contains(&kind), "no {kind} record in {kinds:?}");
    }
    for record in records["records"].as_array().unwrap() {
        let answer = w
            .query(
                auditor,
                "GetRecord",
                by_id(record["tx_id"].as_str().unwrap()),
            )
            .unwrap();
        check_round_trip::<requests::GetRecord>(&answer);
    }
    let lineage = json!({ "id": "count-1", "direction": "both" });
    let answer = w.query(auditor, "GetLineage", lineage.clone()).unwrap();
    assert!(answer["nodes"].as_object().unwrap().len() > 2, "{answer:#}");
    check_round_trip::<requests::GetLineage>(&answer);
    check_round_trip::<requests::ExportProv>(&w.query(auditor, "ExportProv", lineage).unwrap());
    let answer = w.query(auditor, "ListDevices", json!({})).unwrap();
    assert_eq!(answer["items"].as_array().unwrap().len(), 2, "{answer:#}");
    check_round_trip::<requests::DevicesQuery>(&answer);
    let answer = w.query(auditor, "ListContainers", json!({})).unwrap();
    check_round_trip::<requests::ContainersQuery>(&answer);
    let answer = w.query(auditor, "ListContracts", json!({})).unwrap();
    assert_eq!(answer["items"][0]["type"], "contract", "{answer:#}");
    check_round_trip::<requests::ContractsQuery>(&answer);
}

/// Follow a schema's `$ref`s into the metadata's `components.schemas`.
fn resolve<'a>(metadata: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(reference) = schema["$ref"].as_str() {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{reference} does not point into components.schemas"));
        schema = &metadata["components"]["schemas"][name];
        assert!(schema.is_object(), "{reference} resolves to nothing");
    }
    schema
}

#[test]
fn metadata_carries_the_json_schemas_of_every_request_and_response() {
    let metadata = tom_contract::metadata();
    let transactions = metadata["contracts"]["TomContract"]["transactions"]
        .as_array()
        .unwrap();
    assert_eq!(transactions.len(), tom_contract::FUNCTIONS.len());
    for t in transactions {
        let name = t["name"].as_str().unwrap();
        let request = resolve(&metadata, &t["parameters"][0]["schema"]);
        assert_eq!(request["type"], "object", "{name}: {request:#}");
        let returns = resolve(&metadata, &t["returns"]);
        assert!(
            returns.is_object() || returns == &json!(true),
            "{name}: {returns:#}"
        );
    }
    let outcome = transactions
        .iter()
        .find(|t| t["name"] == "RecordOutcome")
        .unwrap();
    let request = resolve(&metadata, &outcome["parameters"][0]["schema"]);
    let mut required: Vec<&str> = request["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(
        required,
        ["action", "authorising_tx", "container_id", "outcome"]
    );
    assert_eq!(request["additionalProperties"], false, "{request:#}");
    assert_eq!(
        resolve(&metadata, &outcome["returns"])["properties"]["kind"]["$ref"],
        "#/components/schemas/RecordKind"
    );
    assert_eq!(outcome["tag"], json!(["submit"]));
    assert_eq!(outcome["roles"], "orchestrator");
    let record_data = transactions
        .iter()
        .find(|t| t["name"] == "RecordData")
        .unwrap();
    assert_eq!(record_data["roles"], "device or orchestrator");
    let terminate = transactions
        .iter()
        .find(|t| t["name"] == "TerminateDevice")
        .unwrap();
    let request = resolve(&metadata, &terminate["parameters"][0]["schema"]);
    assert!(request["properties"]["id"].is_object(), "{request:#}");
}
