//! Determinism: an endorsement policy that needs both organisations only works if every peer
//! computes byte-identical read-write sets and responses. Two driver peers, each on its own
//! stream with its own copy of the world state, endorse every transaction of the smart-city
//! scenario at the same time; the scenario's network asserts that the chaincode asked both the
//! same questions in the same order and gave both the same response, event and read-write set.
//! The result must also equal what the contract library computes on its own ledger, so the
//! protocol adapter adds nothing and loses nothing.

mod common;

use std::sync::atomic::Ordering;

use common::scenario::Network;
use common::*;
use serde_json::json;
use tom_contract::memory::MemoryLedger;

async fn two_peer_scenario() -> (InProcess, Network) {
    let server = InProcess::start().await;
    let org1 = Peer::connect("peer0.org1", server.channel().await).await;
    let org2 = Peer::connect("peer0.org2", server.channel().await).await;
    let network = Network::new(vec![org1, org2]);
    network.smart_city().await;
    (server, network)
}

#[tokio::test]
async fn two_peers_endorse_every_scenario_transaction_identically() {
    let (_server, network) = two_peer_scenario().await;
    let log = network.log.lock().unwrap().clone();
    assert_eq!(log.len(), 22, "every scenario step was endorsed");
    assert!(
        log.iter().all(|(_, _, committed)| *committed),
        "every scenario step committed"
    );
    assert_eq!(
        network.compared.load(Ordering::SeqCst),
        log.len(),
        "each endorsement was compared"
    );

    let (one, two) = (network.peers[0].committed(), network.peers[1].committed());
    let dump = |ledger: &MemoryLedger| {
        ledger
            .dump()
            .map(|(k, v)| (k.to_owned(), v.to_vec()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        dump(&one),
        dump(&two),
        "both peers hold the same world state"
    );
    assert_eq!(one.events(), two.events());
    let names: Vec<&str> = one.events().iter().map(|e| e.event.name.as_str()).collect();
    let count = |n: &str| names.iter().filter(|x| **x == n).count();
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

#[tokio::test]
async fn the_chaincode_computes_what_the_contract_library_computes() {
    let (_server, network) = two_peer_scenario().await;
    let log = network.log.lock().unwrap().clone();
    let mut library = MemoryLedger::new();
    for (tx, endorsement, committed) in &log {
        let function = std::str::from_utf8(&tx.input.args[0]).unwrap();
        let args: Vec<&[u8]> = tx.input.args[1..].iter().map(Vec::as_slice).collect();
        let direct = library
            .endorse(&tx.creator, &tx.tx_id, tx.timestamp, function, &args)
            .unwrap();
        assert_eq!(
            direct.response, endorsement.response.payload,
            "{function}: response"
        );
        assert_eq!(
            direct.rwset, endorsement.rwset,
            "{function}: read-write set"
        );
        if *committed {
            library.commit_block(vec![direct]).pop().unwrap().unwrap();
        }
    }
    let peer = network.peers[0].committed();
    assert!(library.dump().eq(peer.dump()), "the same final state");
}

#[tokio::test]
async fn the_audit_queries_agree_on_both_peers() {
    let (_server, network) = two_peer_scenario().await;
    let auditor = id("org1", "auditor");
    let lineage = network
        .query(
            auditor,
            "GetLineage",
            json!({ "id": "ack-1", "direction": "up", "depth": 8 }),
        )
        .await
        .unwrap();
    let has = |rel: &str, from: &str, to: &str| {
        lineage["relations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["relation"] == rel && r["from"] == from && r["to"] == to)
    };
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
    assert!(has("placedOn", "analyser", "edge-node-1"));
    assert!(has("wasAttributedTo", "pos-1", "Org2MSP/car-42"));

    let prov = network
        .query(
            auditor,
            "ExportProv",
            json!({ "id": "ack-1", "direction": "up" }),
        )
        .await
        .unwrap();
    assert!(
        prov["entity"].as_object().is_some_and(|e| !e.is_empty()),
        "a PROV-JSON document: {prov}"
    );

    let records = network
        .query(
            id("org2", "auditor"),
            "QueryRecords",
            json!({ "entity": "car-42" }),
        )
        .await
        .unwrap();
    let kinds: Vec<&str> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["PROV-ID-create", "CONTRACT", "PROV-DATA"]);
    let history = network
        .query(auditor, "GetHistory", json!({ "id": "collect" }))
        .await
        .unwrap();
    assert!(
        history.to_string().contains("fulfilled"),
        "the contract's history ends fulfilled: {history}"
    );
}
