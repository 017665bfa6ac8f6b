//! The embedded ledger through the gateway's `Ledger` port: Fabric semantics (MVCC conflicts
//! recorded invalid, replay refused, rejections record nothing) and durability across restarts.

mod embedded_common;

use embedded_common::*;
use serde_json::{json, Value};
use tom_gateway::ledger::embedded::{EmbeddedLedger, EmbeddedOptions, Proposal, ValidationCode};
use tom_gateway::ledger::{Ledger, LedgerError};

fn open(dir: &std::path::Path) -> EmbeddedLedger {
    EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_commit_in_blocks_and_queries_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    assert_eq!(
        ledger.height(),
        1,
        "a new ledger holds only its genesis block"
    );
    assert!(ledger
        .describe()
        .contains(&dir.path().display().to_string()));
    assert!(dir.path().join("node.pub.pem").exists() && dir.path().join("node.key.pem").exists());
    let mut events = ledger.subscribe();

    let org = register_org1(&ledger).await;
    assert_eq!(org.block, 1);
    let device = identify(&ledger, "tl-1", "traffic-light-1").await;
    assert_eq!(device.block, 2);
    assert_eq!(ledger.height(), 3);

    let response: Value = serde_json::from_slice(&device.response).unwrap();
    assert_eq!(response["tx_id"], device.tx_id);
    let entity = query(&ledger, "GetEntity", json!({ "id": "tl-1" })).await;
    assert_eq!(entity["state"], "joined", "{entity}");

    let first = events.recv().await.unwrap();
    let second = events.recv().await.unwrap();
    assert_eq!(
        (first.name.as_str(), first.block, first.tx_id.as_str()),
        ("ORG", 1, org.tx_id.as_str())
    );
    assert_eq!(
        (second.name.as_str(), second.block, second.tx_id.as_str()),
        ("PROV-ID-create", 2, device.tx_id.as_str())
    );

    // The stored transaction carries what non-repudiation needs.
    let block = ledger.block(2).unwrap().unwrap();
    let tx = &block.transactions[0];
    assert_eq!(tx.proposal.tx_id, device.tx_id);
    assert_eq!(tx.proposal.function, "IdentifyDevice");
    assert_eq!(tx.proposal.creator.msp_id, "Org1MSP");
    assert_eq!(tx.proposal.derived_tx_id(), device.tx_id);
    assert_eq!(tx.code, ValidationCode::Valid);
    assert_eq!(tx.response, device.response);
    assert!(tx.rwset.writes.keys().any(|k| k.contains("tl-1")));
    let cert = tom_contract::identity::Certificate::from_pem(
        tom_fixtures::identity("org1", "orchestrator").cert_pem,
    )
    .unwrap();
    assert!(cert.verify(&tx.proposal_bytes, &tx.creator_signature));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let (height, events, history, data) = {
        let ledger = std::sync::Arc::new(open(dir.path()));
        register_org1(ledger.as_ref()).await;
        identify(ledger.as_ref(), "tl-1", "traffic-light-1").await;
        // 40 concurrent submitters: group commit puts several in one block.
        let device = signer("org1", "traffic-light-1");
        let mut tasks = Vec::new();
        for i in 0..40 {
            let ledger = ledger.clone();
            let device = device.clone();
            tasks.push(tokio::spawn(async move {
                let arg = bytes(&record_data_request(
                    &format!("reading-{i}"),
                    "tl-1",
                    "traffic-light-1",
                ));
                ledger.submit(&device, "RecordData", &arg).await.unwrap()
            }));
        }
        let mut acknowledged = Vec::new();
        for task in tasks {
            acknowledged.push(task.await.unwrap());
        }
        let height = ledger.height();
        assert!(
            height < 3 + 40,
            "40 concurrent submissions should share blocks (height {height})"
        );
        let events = ledger.events_from(0).unwrap();
        assert_eq!(events.len(), 42);
        let history = query(ledger.as_ref(), "GetHistory", json!({ "id": "tl-1" })).await;
        let mut data = Vec::new();
        for i in 0..40 {
            data.push(
                query(
                    ledger.as_ref(),
                    "GetEntity",
                    json!({ "id": format!("reading-{i}") }),
                )
                .await,
            );
        }
        // Every acknowledged transaction is in the block the submitter was told.
        for submitted in &acknowledged {
            let status = ledger
                .transaction_status(&submitted.tx_id)
                .unwrap()
                .unwrap();
            assert_eq!(
                (status.block, status.code),
                (submitted.block, ValidationCode::Valid)
            );
        }
        (height, events, history, data)
    }; // dropped: shut down

    let ledger = open(dir.path());
    assert_eq!(ledger.height(), height);
    assert_eq!(
        ledger.events_from(0).unwrap(),
        events,
        "same events, same order"
    );
    assert_eq!(
        query(&ledger, "GetHistory", json!({ "id": "tl-1" })).await,
        history
    );
    for (i, before) in data.iter().enumerate() {
        assert_eq!(
            &query(
                &ledger,
                "GetEntity",
                json!({ "id": format!("reading-{i}") })
            )
            .await,
            before
        );
    }
    // The chain continues where it stopped.
    let next = ledger
        .submit(
            &signer("org1", "traffic-light-1"),
            "RecordData",
            &bytes(&record_data_request(
                "after-restart",
                "tl-1",
                "traffic-light-1",
            )),
        )
        .await
        .unwrap();
    assert_eq!(next.block, height);
    ledger.shutdown();
    let report = tom_gateway::ledger::embedded::verify(dir.path()).unwrap();
    assert_eq!((report.blocks, report.transactions), (height + 1, 43));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_transactions_one_commits_and_the_other_is_recorded_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    register_org1(&ledger).await;
    let orchestrator = signer("org1", "orchestrator");
    // Both simulate against the same state (tl-1 absent), then are ordered into one block:
    // the second is validated against the first's writes.
    let a = ledger
        .endorse(
            &orchestrator,
            "IdentifyDevice",
            &bytes(&identify_request("tl-1", "traffic-light-1", "n-a")),
        )
        .await
        .unwrap();
    let b = ledger
        .endorse(
            &orchestrator,
            "IdentifyDevice",
            &bytes(&identify_request("tl-1", "traffic-light-1", "n-b")),
        )
        .await
        .unwrap();
    let mut results = ledger.commit_batch(vec![a.clone(), b.clone()]).await;
    let (rb, ra) = (results.pop().unwrap(), results.pop().unwrap());
    let (winner, loser) = match (ra, rb) {
        (Ok(w), Err(l)) => ((w, a), (l, b)),
        other => panic!("expected the first to commit and the second to conflict, got {other:?}"),
    };
    let LedgerError::Conflict { tx_id, reason } = &loser.0 else {
        panic!("expected a conflict, got {:?}", loser.0)
    };
    assert_eq!(tx_id, loser.1.tx_id());
    assert!(reason.contains("mvcc read conflict"), "{reason}");

    let status = ledger.transaction_status(loser.1.tx_id()).unwrap().unwrap();
    assert_eq!(status.code, ValidationCode::MvccReadConflict);
    let block = ledger.block(status.block).unwrap().unwrap();
    let recorded = &block.transactions[status.index as usize];
    assert_eq!(recorded.proposal.tx_id, loser.1.tx_id());
    assert_eq!(recorded.code, ValidationCode::MvccReadConflict);
    assert_eq!(
        (status.block, status.index),
        (winner.0.block, 1),
        "recorded in the same block, after the winner"
    );

    // Only the winner's writes exist; the loser emitted no event.
    let entity = query(&ledger, "GetEntity", json!({ "id": "tl-1" })).await;
    assert_eq!(entity["joined"]["tx_id"], winner.0.tx_id, "{entity}");
    let events = ledger.events_from(0).unwrap();
    assert!(events.iter().all(|e| e.tx_id != loser.1.tx_id()));
    assert_eq!(events.len(), 2);

    // The same in consecutive blocks, and racing submitters: exactly one of each pair wins.
    let racers: Vec<_> = ["n-e", "n-f", "n-g", "n-h"]
        .into_iter()
        .map(|nonce| {
            let ledger = &ledger;
            let orchestrator = orchestrator.clone();
            async move {
                ledger
                    .submit(
                        &orchestrator,
                        "IdentifyDevice",
                        &bytes(&identify_request("tl-3", "edge-node-1", nonce)),
                    )
                    .await
            }
        })
        .collect();
    let outcomes = futures::future::join_all(racers).await;
    assert_eq!(
        outcomes.iter().filter(|r| r.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    for outcome in &outcomes {
        match outcome {
            Ok(_) => {}
            // Lost the MVCC race, or simulated after the winner committed (then the contract refuses: already joined).
            Err(LedgerError::Conflict { .. }) | Err(LedgerError::Rejected { status: 409, .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    let c = ledger
        .endorse(
            &orchestrator,
            "IdentifyDevice",
            &bytes(&identify_request("tl-2", "roadside-gateway-1", "n-c")),
        )
        .await
        .unwrap();
    let d = ledger
        .endorse(
            &orchestrator,
            "IdentifyDevice",
            &bytes(&identify_request("tl-2", "roadside-gateway-1", "n-d")),
        )
        .await
        .unwrap();
    let committed = ledger.commit(c).await.unwrap();
    let err = ledger.commit(d.clone()).await.unwrap_err();
    assert!(matches!(err, LedgerError::Conflict { .. }), "{err:?}");
    let status = ledger.transaction_status(d.tx_id()).unwrap().unwrap();
    assert_eq!(
        (status.block, status.code),
        (committed.block + 1, ValidationCode::MvccReadConflict)
    );

    ledger.shutdown();
    let report = tom_gateway::ledger::embedded::verify(dir.path()).unwrap();
    let conflicts = outcomes
        .iter()
        .filter(|r| matches!(r, Err(LedgerError::Conflict { .. })))
        .count() as u64;
    assert_eq!(report.invalid_transactions, 2 + conflicts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_transactions_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    let org = tom_fixtures::org("org1");
    let admin = signer("org1", "admin");

    // An endorsement ordered twice.
    let endorsement = ledger
        .endorse(
            &admin,
            "RegisterOrg",
            &bytes(&json!({ "msp_id": org.msp_id, "ca_certificates": [org.ca_cert_pem] })),
        )
        .await
        .unwrap();
    let first = ledger.commit(endorsement.clone()).await.unwrap();
    let height = ledger.height();
    let err = ledger.commit(endorsement.clone()).await.unwrap_err();
    let LedgerError::Conflict { reason, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        reason.contains("duplicate transaction id")
            && reason.contains(&format!("block {}", first.block)),
        "{reason}"
    );
    assert_eq!(ledger.height(), height, "a replay never enters a block");

    // A signed proposal captured and sent again.
    let orchestrator = signer("org1", "orchestrator");
    let creator = orchestrator.creator();
    let (tx_id, nonce) = tom_gateway::ledger::memory::new_tx_id(&creator);
    let proposal = Proposal {
        tx_id,
        nonce: nonce.to_vec(),
        timestamp: tom_gateway::ledger::memory::now(),
        creator,
        function: "IdentifyDevice".into(),
        argument: bytes(&identify_request("tl-1", "traffic-light-1", "n-1")),
    };
    let signature = orchestrator.sign(&proposal.encode());
    let submitted = ledger
        .submit_signed(proposal.clone(), signature.clone())
        .await
        .unwrap();
    let err = ledger
        .submit_signed(proposal.clone(), signature.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LedgerError::Conflict { tx_id, reason } if tx_id == &submitted.tx_id && reason.contains("duplicate")),
        "{err:?}"
    );

    // Neither may the proposal be altered under its signature, nor its id chosen freely.
    let mut altered = proposal.clone();
    altered.argument = bytes(&identify_request("tl-9", "traffic-light-1", "n-9"));
    let err = ledger
        .submit_signed(altered, signature.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LedgerError::Rejected { status: 403, message } if message.contains("does not verify")),
        "{err:?}"
    );
    let mut chosen = proposal.clone();
    chosen.tx_id = "my-own-id".into();
    let err = ledger
        .submit_signed(chosen.clone(), orchestrator.sign(&chosen.encode()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LedgerError::Rejected { status: 400, message } if message.contains("sha256(nonce")),
        "{err:?}"
    );
    // Nor may it claim a time far from the node's clock.
    let mut backdated = proposal.clone();
    backdated.timestamp.seconds -= 3600;
    let (tx_id, nonce) = tom_gateway::ledger::memory::new_tx_id(&backdated.creator);
    (backdated.tx_id, backdated.nonce) = (tx_id, nonce.to_vec());
    let err = ledger
        .submit_signed(backdated.clone(), orchestrator.sign(&backdated.encode()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LedgerError::Rejected { status: 400, message } if message.contains("away from the node's clock")),
        "{err:?}"
    );
    assert_eq!(ledger.height(), height + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_rejection_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    register_org1(&ledger).await;
    let height = ledger.height();
    let orchestrator = signer("org1", "orchestrator");

    // A wrong proof, an unknown function, an unregistered caller's org, malformed JSON.
    let mut bad_proof = identify_request("tl-1", "traffic-light-1", "n-1");
    bad_proof["nonce"] = json!("n-2");
    let cases: Vec<(tom_gateway::ledger::SigningIdentity, &str, Vec<u8>, u16)> = vec![
        (
            orchestrator.clone(),
            "IdentifyDevice",
            bytes(&bad_proof),
            403,
        ),
        (orchestrator.clone(), "NoSuchFunction", b"{}".to_vec(), 400),
        (
            signer("org2", "orchestrator"),
            "IdentifyDevice",
            bytes(&identify_request("tl-1", "traffic-light-1", "n-3")),
            403,
        ),
        (
            orchestrator.clone(),
            "IdentifyDevice",
            b"{not json".to_vec(),
            400,
        ),
    ];
    let mut events = ledger.subscribe();
    for (who, function, arg, status) in cases {
        let err = ledger.submit(&who, function, &arg).await.unwrap_err();
        match &err {
            LedgerError::Rejected {
                status: got,
                message,
            } => {
                assert_eq!(*got, status, "{function}: {message}");
                assert!(!message.is_empty());
            }
            other => panic!("{function}: expected a rejection, got {other:?}"),
        }
    }
    assert_eq!(ledger.height(), height);
    assert!(
        events.try_recv().is_err(),
        "no event for a rejected transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_work_and_frees_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    register_org1(&ledger).await;
    assert!(
        matches!(
            EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()),
            Err(LedgerError::Unavailable(_))
        ),
        "one process per store"
    );
    ledger.shutdown();
    let err = ledger
        .submit(&signer("org1", "admin"), "RegisterOrg", b"{}")
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Unavailable(_)), "{err:?}");
    drop(ledger);
    let reopened = open(dir.path());
    assert_eq!(reopened.height(), 2);

    let err = EmbeddedLedger::open(
        dir.path(),
        EmbeddedOptions {
            max_block_transactions: 0,
            ..EmbeddedOptions::default()
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("max_block_transactions"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_swapped_node_key_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    register_org1(&ledger).await;
    drop(ledger);
    // No key at all: refused, and no new key is made.
    let saved = std::fs::read(dir.path().join("node.key.pem")).unwrap();
    std::fs::remove_file(dir.path().join("node.key.pem")).unwrap();
    let err = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("is missing"), "{err}");
    assert!(!dir.path().join("node.key.pem").exists());
    std::fs::write(dir.path().join("node.key.pem"), saved).unwrap();
    // Another node's key in this data directory.
    let other = tempfile::tempdir().unwrap();
    drop(open(other.path()));
    std::fs::copy(
        other.path().join("node.key.pem"),
        dir.path().join("node.key.pem"),
    )
    .unwrap();
    let err = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("did not sign the last block (1)"),
        "{err}"
    );
    // The public key file still names the key that signed the log, so verify passes.
    assert_eq!(
        tom_gateway::ledger::embedded::verify(dir.path())
            .unwrap()
            .blocks,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_read_invalidated_by_an_insert_is_a_phantom() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    register_org1(&ledger).await;
    identify(&ledger, "tl-1", "traffic-light-1").await;
    // RecordData scans the contracts whose contractor is the generator (to fulfil their
    // GENERATE obligations); a contract for tl-1 defined meanwhile is a phantom in that scan.
    let record = ledger
        .endorse(
            &signer("org1", "traffic-light-1"),
            "RecordData",
            &bytes(&record_data_request("reading-1", "tl-1", "traffic-light-1")),
        )
        .await
        .unwrap();
    assert!(!record.rwset().range_reads.is_empty());
    let define = ledger
        .endorse(
            &signer("org1", "orchestrator"),
            "DefineContract",
            &bytes(&json!({
                "contract_id": "c-1",
                "contractor": "tl-1",
                "generates": [{ "kind": "reading" }],
                "deadline": "2099-01-01T00:00:00Z",
            })),
        )
        .await
        .unwrap();
    let results = ledger.commit_batch(vec![define, record.clone()]).await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    let err = results[1].as_ref().unwrap_err();
    assert!(
        matches!(err, LedgerError::Conflict { reason, .. } if reason.contains("phantom read")),
        "{err:?}"
    );
    let status = ledger.transaction_status(record.tx_id()).unwrap().unwrap();
    assert_eq!(status.code, ValidationCode::PhantomReadConflict);
    // Simulated again, it sees the contract and fulfils it.
    let again = ledger
        .submit(
            &signer("org1", "traffic-light-1"),
            "RecordData",
            &bytes(&record_data_request("reading-1", "tl-1", "traffic-light-1")),
        )
        .await
        .unwrap();
    let response: Value = serde_json::from_slice(&again.response).unwrap();
    assert!(response.to_string().contains("c-1"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fsync_a_clean_shutdown_still_keeps_everything() {
    // `durable: false` exists for benchmarks only; even then shutdown must not lose blocks.
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        durable: false,
        max_block_transactions: 1,
        ..EmbeddedOptions::default()
    };
    let ledger = EmbeddedLedger::open(dir.path(), options).unwrap();
    register_org1(&ledger).await;
    let device = identify(&ledger, "tl-1", "traffic-light-1").await;
    assert_eq!(device.block, 2, "one transaction per block");
    drop(ledger);
    let ledger = open(dir.path());
    assert_eq!(ledger.height(), 3);
    assert!(ledger.transaction_status(&device.tx_id).unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingering_for_a_batch_still_commits_everything() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        batch_wait: std::time::Duration::from_millis(5),
        ..EmbeddedOptions::default()
    };
    let ledger = std::sync::Arc::new(EmbeddedLedger::open(dir.path(), options).unwrap());
    register_org1(ledger.as_ref()).await;
    identify(ledger.as_ref(), "tl-1", "traffic-light-1").await;
    let device = signer("org1", "traffic-light-1");
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let (ledger, device) = (ledger.clone(), device.clone());
            tokio::spawn(async move {
                let arg = bytes(&record_data_request(
                    &format!("r-{i}"),
                    "tl-1",
                    "traffic-light-1",
                ));
                ledger.submit(&device, "RecordData", &arg).await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert!(ledger.height() <= 3 + 24);
    assert_eq!(ledger.events_from(3).unwrap().len(), 24);
}
