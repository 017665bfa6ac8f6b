//! The chaincode protocol, driven from the peer's side over real gRPC on loopback: the
//! handshake, every ledger operation the contract uses (with iterators and pagination),
//! refusals and error paths, many transactions on one stream, and peers that go away.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::scenario::Network;
use common::*;
use fabric_shim_protos::peer::chaincode_message::Type;
use fabric_shim_protos::peer::{ChaincodeInput, Response};
use prost::Message;
use serde_json::json;
use tom_contract::memory::MemoryLedger;

fn auditor() -> &'static tom_fixtures::Identity {
    id("org1", "auditor")
}

/// A one-peer network on a fresh in-process server, with Org1MSP and Org2MSP registered.
async fn network_with(behaviour: Behaviour) -> (InProcess, Network) {
    let server = InProcess::start().await;
    let peer = Peer::connect_with(
        "peer0.org1",
        server.channel().await,
        behaviour,
        Arc::new(MemoryLedger::new()),
    )
    .await;
    let network = Network::new(vec![peer]);
    network.register_org("org1").await.unwrap();
    network.register_org("org2").await.unwrap();
    (server, network)
}

#[tokio::test]
async fn registers_with_the_package_id_and_answers_metadata_under_both_names() {
    let server = InProcess::start().await;
    let mut stream = RawStream::open(server.channel().await).await.unwrap();
    stream.handshake(CHAINCODE_ID).await;
    let clock = TxClock::default();

    let metadata = clock.proposal(auditor(), "org.hyperledger.fabric:GetMetadata", &[]);
    stream.send(transaction_message(&metadata)).await;
    let completed = stream.expect(Type::Completed).await;
    assert_eq!(completed.txid, metadata.tx_id);
    assert_eq!(completed.channel_id, CHANNEL);
    let response = Response::decode(completed.payload.as_slice()).unwrap();
    assert_eq!(response.status, 200, "{}", response.message);
    let json: serde_json::Value = serde_json::from_slice(&response.payload).unwrap();
    let transactions = json["contracts"]["TomContract"]["transactions"]
        .as_array()
        .unwrap();
    assert_eq!(transactions.len(), tom_contract::FUNCTIONS.len());

    // `TomContract:Fn` reaches the same function as `Fn`: an unknown org is a 404 either way.
    for name in ["GetOrg", "TomContract:GetOrg"] {
        let query = clock.proposal(auditor(), name, &[br#"{"id":"Org9MSP"}"#.to_vec()]);
        stream.send(transaction_message(&query)).await;
        // The chaincode reads the org's key before answering.
        let get = stream.expect(Type::GetState).await;
        assert_eq!(get.txid, query.tx_id);
        stream
            .send(message(Type::Response, &query.tx_id, Vec::new()))
            .await;
        let completed = stream.expect(Type::Completed).await;
        let response = Response::decode(completed.payload.as_slice()).unwrap();
        assert_eq!(response.status, 404, "{name}: {}", response.message);
        assert!(response.message.contains("Org9MSP"), "{}", response.message);
    }
}

#[tokio::test]
async fn keepalive_is_echoed_before_and_after_the_handshake() {
    let server = InProcess::start().await;
    let mut stream = RawStream::open(server.channel().await).await.unwrap();
    stream.expect(Type::Register).await;
    stream.send(message(Type::Keepalive, "", Vec::new())).await;
    stream.expect(Type::Keepalive).await;
    stream.send(message(Type::Registered, "", Vec::new())).await;
    stream.send(message(Type::Ready, "", Vec::new())).await;
    stream
        .send(message(Type::Keepalive, "", b"ping".to_vec()))
        .await;
    let echo = stream.expect(Type::Keepalive).await;
    assert_eq!(echo.payload, b"ping");
}

#[tokio::test]
async fn a_transaction_before_ready_is_refused_and_ends_the_stream() {
    let server = InProcess::start().await;
    let mut stream = RawStream::open(server.channel().await).await.unwrap();
    stream.expect(Type::Register).await;
    let tx = TxClock::default().proposal(auditor(), "GetOrg", &[b"{}".to_vec()]);
    stream.send(transaction_message(&tx)).await;
    let error = stream.expect(Type::Error).await;
    let text = String::from_utf8(error.payload).unwrap();
    assert!(
        text.contains("TRANSACTION while waiting for REGISTERED"),
        "{text}"
    );
    let end = stream.next().await;
    let status = end.expect_err("the stream should end with a status");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");

    // The server itself is unharmed: a new stream works.
    let peer = Peer::connect("peer0", server.channel().await).await;
    let network = Network::new(vec![peer]);
    network.register_org("org1").await.unwrap();
}

#[tokio::test]
async fn state_reads_writes_and_deletes_reach_the_peer_and_commit_there() {
    let (_server, network) = network_with(Behaviour::default()).await;
    let peer = &network.peers[0];

    // IdentifyDevice: reads (org, entity, nonce …), writes entity, record and indexes, one event.
    let device = network
        .endorse_all(
            id("org1", "orchestrator"),
            "IdentifyDevice",
            identify_request(
                &network,
                "edge-node-1",
                id("org1", "edge-node-1"),
                "edge-node",
            ),
        )
        .await;
    assert!(device.ok(), "{}", device.response.message);
    assert!(device.count("GET_STATE ") >= 2, "{:?}", device.requests);
    assert!(device.count("PUT_STATE ") >= 2, "{:?}", device.requests);
    assert_eq!(device.event.as_ref().unwrap().event_name, "PROV-ID-create");
    let entity_key = tom_contract::keys::key(tom_contract::keys::ENTITY, &["edge-node-1"]).unwrap();
    assert!(
        device.rwset.writes.contains_key(&entity_key),
        "the entity is written: {:?}",
        device.rwset.writes.keys()
    );
    // Reads never see the transaction's own writes (the peer's rule): the entity was read absent.
    assert_eq!(device.rwset.reads.get(&entity_key), Some(&None));
    peer.commit(&device).unwrap();
    let committed = peer.committed();
    let stored = tom_contract::simulation::CommittedState::get(&*committed, &entity_key)
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&stored.value).unwrap()["id"],
        "edge-node-1"
    );

    // A container placed on the device, then terminated: the placement index is deleted.
    network
        .identify_container("analyser", id("org1", "analyser"))
        .await
        .unwrap();
    network.place("analyser", "edge-node-1").await.unwrap();
    let terminate = network
        .endorse_all(
            id("org1", "orchestrator"),
            "TerminateContainer",
            json!({ "id": "analyser" }),
        )
        .await;
    assert!(terminate.ok(), "{}", terminate.response.message);
    // The placement index and the container's `joined` inventory entry.
    assert_eq!(terminate.count("DEL_STATE "), 2, "{:?}", terminate.requests);
    let placed_on =
        tom_contract::keys::key(tom_contract::keys::PLACED_ON, &["edge-node-1", "analyser"])
            .unwrap();
    assert_eq!(
        terminate.rwset.writes.get(&placed_on),
        Some(&None),
        "the placement index is deleted"
    );
    peer.commit(&terminate).unwrap();

    // TerminateDevice scans the device's placements with a partial composite key range.
    let leave = network
        .endorse_all(
            id("org1", "orchestrator"),
            "TerminateDevice",
            json!({ "id": "edge-node-1" }),
        )
        .await;
    assert!(leave.ok(), "{}", leave.response.message);
    let (prefix, end) =
        tom_contract::keys::prefix_range(tom_contract::keys::PLACED_ON, &["edge-node-1"]).unwrap();
    assert!(
        leave
            .requests
            .contains(&format!("GET_STATE_BY_RANGE {prefix:?} {end:?} None")),
        "a composite-key range query: {:?}",
        leave.requests
    );
    peer.commit(&leave).unwrap();
}

fn identify_request(
    network: &Network,
    device_id: &str,
    device: &tom_fixtures::Identity,
    kind: &str,
) -> serde_json::Value {
    let nonce = format!("nonce-{device_id}-{}", network.clock.now().seconds);
    common::scenario::device_request(device_id, device, kind, &nonce)
}

#[tokio::test]
async fn history_comes_back_oldest_first_across_query_state_next() {
    // One result per batch: every further history entry needs a QUERY_STATE_NEXT.
    let (_server, network) = network_with(Behaviour {
        batch_size: 1,
        ..Behaviour::default()
    })
    .await;
    network
        .identify_device("edge-node-1", id("org1", "edge-node-1"), "edge-node")
        .await
        .unwrap();
    network
        .identify_container("analyser", id("org1", "analyser"))
        .await
        .unwrap();
    network.place("analyser", "edge-node-1").await.unwrap();
    network
        .submit(
            id("org1", "orchestrator"),
            "TerminateContainer",
            json!({ "id": "analyser" }),
        )
        .await
        .unwrap();

    let history = network
        .endorse_all(auditor(), "GetHistory", json!({ "id": "analyser" }))
        .await;
    assert!(history.ok(), "{}", history.response.message);
    assert!(
        history.count("GET_HISTORY_FOR_KEY ") >= 1,
        "{:?}",
        history.requests
    );
    assert!(
        history.count("QUERY_STATE_NEXT ") >= 2,
        "{:?}",
        history.requests
    );
    let versions = history.json();
    let versions = versions
        .as_array()
        .or_else(|| versions["versions"].as_array())
        .expect("a list of versions")
        .clone();
    assert!(versions.len() >= 3, "joined, placed, left: {versions:?}");
    // The driver peer sends newest first, as Fabric v2+ does; the contract must see oldest first.
    let text = serde_json::to_string(&versions).unwrap();
    let joined = text.find("joined").expect("a joined version");
    let left = text.rfind("left").expect("a left version");
    assert!(joined < left, "history must be oldest first: {text}");
}

#[tokio::test]
async fn paginated_queries_send_page_size_and_bookmark_and_get_the_bookmark_back() {
    let (_server, network) = network_with(Behaviour {
        batch_size: 1,
        ..Behaviour::default()
    })
    .await;
    for device in ["traffic-light-1", "roadside-gateway-1", "edge-node-1"] {
        network
            .identify_device(device, id("org1", device), "sensor")
            .await
            .unwrap();
    }
    let all = network
        .query(auditor(), "QueryRecords", json!({ "page_size": 100 }))
        .await
        .unwrap();
    let all: Vec<serde_json::Value> = all["records"].as_array().unwrap().clone();
    assert_eq!(all.len(), 5, "two ORG and three PROV-ID-create records");

    let mut pages = Vec::new();
    let mut bookmark = String::new();
    loop {
        let page = network
            .endorse_all(
                auditor(),
                "QueryRecords",
                json!({ "page_size": 2, "bookmark": bookmark }),
            )
            .await;
        assert!(page.ok(), "{}", page.response.message);
        let range = page
            .requests
            .iter()
            .find(|r| r.starts_with("GET_STATE_BY_RANGE"))
            .unwrap();
        // The client's bookmark is opaque base64url; the peer gets the key it names.
        let key = if bookmark.is_empty() {
            String::new()
        } else {
            tom_contract::keys::decode_bookmark(&bookmark).unwrap()
        };
        assert!(
            range.ends_with(&format!("Some((2, {key:?}))")),
            "page size and bookmark are sent: {range}"
        );
        let value = page.json();
        pages.extend(value["records"].as_array().unwrap().iter().cloned());
        bookmark = value["bookmark"].as_str().unwrap().to_owned();
        if bookmark.is_empty() {
            break;
        }
        assert!(
            page.count("QUERY_STATE_NEXT ") >= 1,
            "a two-row page in one-row batches: {:?}",
            page.requests
        );
    }
    assert_eq!(
        pages, all,
        "pages put together are the whole result, in order"
    );
}

#[tokio::test]
async fn refusals_are_completed_with_the_contracts_status_and_write_nothing() {
    let (_server, network) = network_with(Behaviour::default()).await;
    network
        .identify_device("edge-node-1", id("org1", "edge-node-1"), "edge-node")
        .await
        .unwrap();
    let orchestrator = id("org1", "orchestrator");
    let cases: Vec<(&tom_fixtures::Identity, &str, serde_json::Value, i32, &str)> = vec![
        (
            auditor(),
            "NoSuchFunction",
            json!({}),
            400,
            "unknown function",
        ),
        (
            auditor(),
            "GetEntity",
            json!({ "nope": 1 }),
            400,
            "invalid argument",
        ),
        (
            auditor(),
            "RegisterOrg",
            json!({ "msp_id": "Org1MSP", "ca_certificates": [] }),
            403,
            "access denied",
        ),
        (
            auditor(),
            "GetEntity",
            json!({ "id": "ghost" }),
            404,
            "ghost",
        ),
        (
            orchestrator,
            "IdentifyDevice",
            identify_request(
                &network,
                "edge-node-1",
                id("org1", "edge-node-1"),
                "edge-node",
            ),
            409,
            "edge-node-1",
        ),
    ];
    for (who, function, arg, status, fragment) in cases {
        let endorsement = network.endorse_all(who, function, arg).await;
        assert_eq!(endorsement.kind, Type::Completed, "{function}");
        assert_eq!(
            endorsement.response.status, status,
            "{function}: {}",
            endorsement.response.message
        );
        assert!(
            endorsement.response.message.contains(fragment),
            "{function}: {:?}",
            endorsement.response.message
        );
        assert!(
            endorsement.event.is_none(),
            "{function}: a refusal sets no event"
        );
        assert!(endorsement.response.payload.is_empty());
    }
    // Wrong argument count is the contract's 400 too.
    let two_args =
        network
            .clock
            .proposal(auditor(), "GetEntity", &[b"{}".to_vec(), b"{}".to_vec()]);
    let endorsement = network.peers[0].endorse(&two_args).await;
    assert_eq!(
        endorsement.response.status, 400,
        "{}",
        endorsement.response.message
    );
}

#[tokio::test]
async fn a_peer_error_fails_the_transaction_with_the_peers_message() {
    let refused = tom_contract::keys::key(tom_contract::keys::ENTITY, &["refused-device"]).unwrap();
    let (_server, network) = network_with(Behaviour {
        refuse_key: Some(refused),
        ..Behaviour::default()
    })
    .await;
    let endorsement = network
        .endorse_all(auditor(), "GetEntity", json!({ "id": "refused-device" }))
        .await;
    assert_eq!(endorsement.kind, Type::Completed);
    assert_eq!(
        endorsement.response.status, 500,
        "{}",
        endorsement.response.message
    );
    assert!(
        endorsement.response.message.contains("injected failure"),
        "{}",
        endorsement.response.message
    );
    // Other keys are still served.
    network
        .query(auditor(), "GetOrg", json!({ "id": "Org1MSP" }))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_undecodable_batch_closes_the_iterator_and_fails_the_transaction() {
    let behaviour = Behaviour {
        batch_size: 1,
        corrupt_second_batch: true,
        ..Behaviour::default()
    };
    let (_server, network) = network_with(behaviour).await;
    // Five records, one per batch: the corrupt second batch still has more behind it, so the
    // chaincode must close the iterator the peer holds open.
    for device in ["traffic-light-1", "roadside-gateway-1", "edge-node-1"] {
        network
            .identify_device(device, id("org1", device), "sensor")
            .await
            .unwrap();
    }
    let endorsement = network
        .endorse_all(auditor(), "QueryRecords", json!({ "page_size": 10 }))
        .await;
    assert_eq!(
        endorsement.response.status, 500,
        "{}",
        endorsement.response.message
    );
    assert!(
        endorsement.response.message.contains("does not decode"),
        "{}",
        endorsement.response.message
    );
    assert_eq!(
        endorsement.count("QUERY_STATE_CLOSE "),
        1,
        "{:?}",
        endorsement.requests
    );
    assert_eq!(endorsement.open_iterators, 0);
}

#[tokio::test]
async fn malformed_transactions_are_answered_with_error_messages() {
    let server = InProcess::start().await;
    let mut stream = RawStream::open(server.channel().await).await.unwrap();
    stream.handshake(CHAINCODE_ID).await;
    let clock = TxClock::default();

    let tx = clock.proposal(auditor(), "GetOrg", &[b"{}".to_vec()]);
    let mut garbage = transaction_message(&tx);
    garbage.payload = vec![0xff, 0xff, 0xff];
    stream.send(garbage).await;
    let error = stream.expect(Type::Error).await;
    assert_eq!(error.txid, tx.tx_id);
    assert!(String::from_utf8_lossy(&error.payload).contains("not a ChaincodeInput"));

    let tx = clock.proposal(auditor(), "GetOrg", &[b"{}".to_vec()]);
    let mut anonymous = transaction_message(&tx);
    anonymous.proposal = None;
    stream.send(anonymous).await;
    let error = stream.expect(Type::Error).await;
    assert!(String::from_utf8_lossy(&error.payload).contains("no signed proposal"));

    let tx = clock.proposal(auditor(), "GetOrg", &[]);
    let mut empty = transaction_message(&tx);
    empty.payload = ChaincodeInput::default().encode_to_vec();
    stream.send(empty).await;
    let completed = stream.expect(Type::Completed).await;
    let response = Response::decode(completed.payload.as_slice()).unwrap();
    assert_eq!(response.status, 400);
    assert!(
        response.message.contains("no function name"),
        "{}",
        response.message
    );

    // A message a peer never sends to a chaincode is refused, and the stream stays usable.
    stream
        .send(message(Type::GetState, "stray", Vec::new()))
        .await;
    let error = stream.expect(Type::Error).await;
    assert!(String::from_utf8_lossy(&error.payload).contains("cannot handle GET_STATE"));
    let metadata = clock.proposal(auditor(), "org.hyperledger.fabric:GetMetadata", &[]);
    stream.send(transaction_message(&metadata)).await;
    stream.expect(Type::Completed).await;
}

#[tokio::test]
async fn many_transactions_are_in_flight_on_one_stream_at_once() {
    let behaviour = Behaviour {
        delay: Some(Duration::from_millis(5)),
        ..Behaviour::default()
    };
    let (_server, network) = network_with(behaviour).await;
    network
        .identify_device("traffic-light-1", id("org1", "traffic-light-1"), "sensor")
        .await
        .unwrap();
    let peer = &network.peers[0];
    let light = id("org1", "traffic-light-1");

    // 20 invokes (RecordData, each its own data item) and 20 queries, all sent at once.
    let mut proposals = Vec::new();
    for i in 0..20 {
        let request = common::scenario::data_request(
            light,
            &format!("count-{i}"),
            "vehicle-count",
            "traffic-light-1",
            &[],
            &format!("reading {i}"),
        );
        proposals.push((
            format!("count-{i}"),
            tx(&network.clock, light, "RecordData", &request),
        ));
        let org = if i % 2 == 0 { "Org1MSP" } else { "Org2MSP" };
        proposals.push((
            org.to_owned(),
            tx(&network.clock, auditor(), "GetOrg", &json!({ "id": org })),
        ));
    }
    let started = Instant::now();
    let endorsements =
        futures::future::join_all(proposals.iter().map(|(_, tx)| peer.endorse(tx))).await;
    let elapsed = started.elapsed();

    for ((expected, tx), endorsement) in proposals.iter().zip(&endorsements) {
        assert_eq!(endorsement.tx_id, tx.tx_id);
        let value = endorsement.json();
        let text = value.to_string();
        assert!(
            text.contains(&format!("\"{expected}\"")),
            "{expected}: answer of another transaction? {text}"
        );
    }
    // Every RecordData endorsed against the same snapshot commits (distinct keys).
    for endorsement in endorsements.iter().step_by(2) {
        peer.commit(endorsement).unwrap();
    }

    // The chaincode interleaved them: some transaction sent requests while another was open.
    let trace = peer.trace.lock().unwrap().clone();
    let mut spans: HashMap<String, (usize, usize)> = HashMap::new();
    for (index, (tx_id, _)) in trace.iter().enumerate() {
        spans
            .entry(tx_id.clone())
            .and_modify(|s| s.1 = index)
            .or_insert((index, index));
    }
    let spans: Vec<(usize, usize)> = proposals
        .iter()
        .filter_map(|(_, tx)| spans.get(&tx.tx_id).copied())
        .collect();
    let max_open = (0..trace.len())
        .map(|i| spans.iter().filter(|(a, b)| *a <= i && i <= *b).count())
        .max()
        .unwrap();
    assert!(
        max_open >= 10,
        "at most {max_open} transactions were open at once"
    );
    // Serially, 40 transactions of several 5 ms round trips each would take well over a second.
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}

#[tokio::test]
async fn two_peers_on_two_streams_are_served_independently() {
    let server = InProcess::start().await;
    let one = Peer::connect("peer0.org1", server.channel().await).await;
    let two = Peer::connect("peer0.org2", server.channel().await).await;
    // Different world states: each stream's requests are answered by its own peer.
    let n1 = Network::new(vec![one]);
    n1.register_org("org1").await.unwrap();
    let n2 = Network::new(vec![two]);
    let (a, b) = tokio::join!(
        n1.query(auditor(), "GetOrg", json!({ "id": "Org1MSP" })),
        n2.query(auditor(), "GetOrg", json!({ "id": "Org1MSP" })),
    );
    assert_eq!(a.unwrap()["msp_id"], "Org1MSP");
    assert_eq!(b.unwrap_err().0, 404, "peer two has no Org1MSP");
}

#[tokio::test]
async fn a_peer_that_drops_its_stream_mid_transaction_is_served_after_reconnecting() {
    let server = InProcess::start().await;
    let bystander = Network::new(vec![
        Peer::connect("peer0.org2", server.channel().await).await,
    ]);
    bystander.register_org("org2").await.unwrap();

    let mut stream = RawStream::open(server.channel().await).await.unwrap();
    stream.handshake(CHAINCODE_ID).await;
    let tx = TxClock::default().proposal(auditor(), "GetOrg", &[br#"{"id":"Org1MSP"}"#.to_vec()]);
    stream.send(transaction_message(&tx)).await;
    stream.expect(Type::GetState).await;
    drop(stream); // the peer restarts without answering

    let network = Network::new(vec![
        Peer::connect("peer0.org1", server.channel().await).await,
    ]);
    network.register_org("org1").await.unwrap();
    assert_eq!(
        network
            .query(auditor(), "GetOrg", json!({ "id": "Org1MSP" }))
            .await
            .unwrap()["msp_id"],
        "Org1MSP"
    );
    // The other peer's stream was never disturbed.
    bystander
        .query(auditor(), "GetOrg", json!({ "id": "Org2MSP" }))
        .await
        .unwrap();
}

#[tokio::test]
async fn shutdown_ends_open_streams_promptly_even_with_a_stalled_transaction() {
    let server = InProcess::start().await;
    let mut idle = Peer::connect("peer0.org1", server.channel().await).await;
    let mut stalled = RawStream::open(server.channel().await).await.unwrap();
    stalled.handshake(CHAINCODE_ID).await;
    let tx = TxClock::default().proposal(auditor(), "GetOrg", &[br#"{"id":"Org1MSP"}"#.to_vec()]);
    stalled.send(transaction_message(&tx)).await;
    stalled.expect(Type::GetState).await; // …and never answered
    let address = server.address;

    let started = Instant::now();
    server.shutdown().await.unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "shutdown took {took:?} (grace 2 s + 1 s)"
    );
    let status = idle
        .ended()
        .await
        .expect_err("the stream ends with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
    assert!(status.message().contains("shutting down"), "{status}");
    match stalled.next().await {
        Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status}"),
        Ok(other) => panic!("expected the stalled stream to end with UNAVAILABLE, got {other:?}"),
    }
    // Nothing listens any more.
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn init_is_served_like_a_transaction_and_duplicates_and_stray_answers_are_handled() {
    let server = InProcess::start().await;
    let mut stream = RawStream::open(server.channel().await).await.unwrap();
    stream.handshake(CHAINCODE_ID).await;
    let clock = TxClock::default();

    // A peer sends INIT for a definition with --init-required: it runs the named function.
    let init = clock.proposal(auditor(), "org.hyperledger.fabric:GetMetadata", &[]);
    let mut as_init = transaction_message(&init);
    as_init.r#type = Type::Init as i32;
    stream.send(as_init).await;
    let completed = stream.expect(Type::Completed).await;
    assert_eq!(
        Response::decode(completed.payload.as_slice())
            .unwrap()
            .status,
        200
    );

    // A second TRANSACTION with the id of one still in flight is refused; the first goes on.
    let tx = clock.proposal(auditor(), "GetOrg", &[br#"{"id":"Org1MSP"}"#.to_vec()]);
    stream.send(transaction_message(&tx)).await;
    stream.expect(Type::GetState).await;
    stream.send(transaction_message(&tx)).await;
    let error = stream.expect(Type::Error).await;
    assert_eq!(error.txid, tx.tx_id);
    assert!(String::from_utf8_lossy(&error.payload).contains("already in flight"));

    // An answer for a transaction that is not in flight is ignored.
    stream.send(message_for(Type::Response, "no-such-tx")).await;
    stream
        .send(message(Type::Response, &tx.tx_id, Vec::new()))
        .await;
    let completed = stream.expect(Type::Completed).await;
    assert_eq!(completed.txid, tx.tx_id);
    assert_eq!(
        Response::decode(completed.payload.as_slice())
            .unwrap()
            .status,
        404
    );
}

fn message_for(kind: Type, tx_id: &str) -> fabric_shim_protos::peer::ChaincodeMessage {
    message(kind, tx_id, b"stray".to_vec())
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_transaction_finish_and_refuses_new_ones() {
    let server = InProcess::start().await;
    let mut stream = RawStream::open(server.channel().await).await.unwrap();
    stream.handshake(CHAINCODE_ID).await;
    let clock = TxClock::default();
    let tx = clock.proposal(auditor(), "GetOrg", &[br#"{"id":"Org1MSP"}"#.to_vec()]);
    stream.send(transaction_message(&tx)).await;
    stream.expect(Type::GetState).await;

    let stopping = tokio::spawn(server.shutdown());
    // New work is refused once the server drains: probe until a new transaction is refused
    // (each probe the server took before it began draining is answered in full), within the
    // stream's own deadline for each answer and a bounded number of probes.
    let mut refused = None;
    for _ in 0..10_000 {
        let late = clock.proposal(auditor(), "org.hyperledger.fabric:GetMetadata", &[]);
        stream.send(transaction_message(&late)).await;
        let answer = stream
            .next()
            .await
            .expect("stream failed")
            .expect("stream ended");
        assert_eq!(answer.txid, late.tx_id, "{answer:?}");
        if answer.r#type == Type::Error as i32 {
            refused = Some(answer);
            break;
        }
        assert_eq!(answer.r#type, Type::Completed as i32, "{answer:?}");
    }
    let refused = refused.expect("the draining server never refused a new transaction");
    assert!(String::from_utf8_lossy(&refused.payload).contains("shutting down"));
    // …while the transaction in flight still gets its answer and completes.
    stream
        .send(message(Type::Response, &tx.tx_id, Vec::new()))
        .await;
    let completed = stream.expect(Type::Completed).await;
    assert_eq!(completed.txid, tx.tx_id);
    assert_eq!(
        Response::decode(completed.payload.as_slice())
            .unwrap()
            .status,
        404
    );
    let status = stream.next().await.expect_err("then the stream ends");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
    stopping.await.unwrap().unwrap();
}
