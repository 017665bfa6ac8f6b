//! `verify` on the embedded ledger's block log: an intact log verifies, and one flipped byte
//! anywhere in a stored block makes it fail at that block, naming the transaction when one is
//! at fault.
//!
//! Bytes are flipped the way an attacker with write access to the store would: by opening the
//! redb file (after the node shut down) and rewriting one block's value through redb, so the
//! store itself stays well-formed and only the ledger's own checks can notice. One test also
//! flips bytes in the raw file, bypassing redb.

mod embedded_common;

use std::path::Path;

use embedded_common::*;
use tom_gateway::ledger::embedded::codec::RawBlock;
use tom_gateway::ledger::embedded::store::{self, BLOCKS, STORE_FILE};
use tom_gateway::ledger::embedded::{
    verify, verify_with_public_key, EmbeddedLedger, EmbeddedOptions, TamperKind, VerifyError,
};
use tom_gateway::ledger::Ledger;

/// A shut-down ledger with blocks 0 (genesis), 1 (RegisterOrg), 2 (IdentifyDevice), 3 (three
/// RecordData committed together) and 4 (one RecordData).
async fn build_log(dir: &Path) {
    let ledger = EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap();
    register_org1(&ledger).await;
    identify(&ledger, "tl-1", "traffic-light-1").await;
    let device = signer("org1", "traffic-light-1");
    let mut endorsements = Vec::new();
    for i in 0..3 {
        let arg = bytes(&record_data_request(
            &format!("reading-{i}"),
            "tl-1",
            "traffic-light-1",
        ));
        endorsements.push(ledger.endorse(&device, "RecordData", &arg).await.unwrap());
    }
    let results = ledger.commit_batch(endorsements).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|s| s.block == 3)),
        "{results:?}"
    );
    ledger
        .submit(
            &device,
            "RecordData",
            &bytes(&record_data_request(
                "tamper-marker-7f3a",
                "tl-1",
                "traffic-light-1",
            )),
        )
        .await
        .unwrap();
    ledger.shutdown();
}

/// Where a part of a block starts inside the block's bytes.
fn offset_of(block: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - block.as_ptr() as usize
}

/// Flip one byte of block `number` at an offset chosen from its decoded layout, then verify.
fn tamper(
    template: &Path,
    number: u64,
    choose: impl Fn(&[u8], &RawBlock<'_>) -> usize,
) -> VerifyError {
    let dir = copy_dir(template);
    let mut block = read_block(dir.path(), number);
    let offset = {
        let raw = RawBlock::decode(&block).unwrap();
        choose(&block, &raw)
    };
    block[offset] ^= 0x01;
    write_block(dir.path(), number, &block);
    verify(dir.path()).unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intact_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path()).await;
    let report = verify(dir.path()).unwrap();
    assert_eq!(
        (
            report.blocks,
            report.transactions,
            report.invalid_transactions
        ),
        (5, 6, 0)
    );
    assert_eq!(report.tip_hash.len(), 64);
    assert!(
        report
            .to_string()
            .starts_with("ledger intact: 5 blocks, 6 transactions"),
        "{report}"
    );
    // Verifying changes nothing and the node reopens on the same tip.
    assert_eq!(verify(dir.path()).unwrap(), report);
    let ledger = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap();
    assert_eq!(ledger.height(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flipped_byte_in_a_stored_block_fails_verify_at_that_block() {
    let template = tempfile::tempdir().unwrap();
    build_log(template.path()).await;

    // (block, what to flip, expected tx index, expected failure)
    type Chooser = fn(&[u8], &RawBlock<'_>) -> usize;
    type Case = (
        u64,
        &'static str,
        Chooser,
        Option<u32>,
        fn(&TamperKind) -> bool,
    );
    let cases: Vec<Case> = vec![
        (
            3,
            "middle of transaction 1",
            |b, r| offset_of(b, r.transactions[1]) + r.transactions[1].len() / 2,
            Some(1),
            |k| *k == TamperKind::TransactionHash,
        ),
        (
            3,
            "last byte of transaction 2 (validation code)",
            |b, r| offset_of(b, r.transactions[2]) + r.transactions[2].len() - 1,
            Some(2),
            |k| *k == TamperKind::TransactionHash,
        ),
        (
            2,
            "first byte of the only transaction",
            |b, r| offset_of(b, r.transactions[0]),
            Some(0),
            |k| *k == TamperKind::TransactionHash,
        ),
        (
            4,
            "block number in the header",
            |b, r| offset_of(b, r.header_bytes) + 12,
            None,
            |k| matches!(k, TamperKind::Numbering { .. }),
        ),
        (
            4,
            "header timestamp",
            |b, r| offset_of(b, r.header_bytes) + 5 + 8 + 64 + 7,
            None,
            |k| *k == TamperKind::BlockSignature,
        ),
        (
            1,
            "previous hash",
            |b, r| offset_of(b, r.header_bytes) + 5 + 8,
            None,
            |k| *k == TamperKind::HashLink,
        ),
        (
            3,
            "a transaction hash in the header",
            |b, r| offset_of(b, r.header_bytes) + r.header_bytes.len() - 1,
            None,
            |k| *k == TamperKind::BlockSignature,
        ),
        (
            2,
            "node signature",
            |b, r| offset_of(b, r.signature) + r.signature.len() - 1,
            None,
            |k| *k == TamperKind::BlockSignature,
        ),
        (
            0,
            "genesis signature",
            |b, r| offset_of(b, r.signature) + r.signature.len() - 1,
            None,
            |k| *k == TamperKind::BlockSignature,
        ),
        (
            3,
            "a length prefix",
            |b, r| offset_of(b, r.transactions[0]) - 2,
            None,
            |k| matches!(k, TamperKind::Undecodable(_)),
        ),
        (
            1,
            "the block tag",
            |_, _| 0,
            None,
            |k| matches!(k, TamperKind::Undecodable(_)),
        ),
    ];
    for (block, what, choose, tx_index, expected) in cases {
        let err = tamper(template.path(), block, choose);
        let tampering = err
            .tampering()
            .unwrap_or_else(|| panic!("{what}: expected tampering, got {err}"));
        assert_eq!(tampering.block, block, "{what}: {tampering}");
        assert_eq!(tampering.tx_index, tx_index, "{what}: {tampering}");
        assert!(expected(&tampering.kind), "{what}: {tampering}");
        assert_eq!(tampering.intact_blocks, block, "{what}");
        // A transaction is named by id whenever its proposal still decodes (not when its very
        // first byte, the tag, is the one flipped).
        if tx_index.is_some() && !what.starts_with("first byte") {
            assert_eq!(
                tampering.tx_id.as_ref().map(String::len),
                Some(64),
                "{what}: names the transaction: {tampering}"
            );
        }
        let message = err.to_string();
        assert!(
            message.contains(&format!("block {block}")),
            "{what}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_reordered_or_resigned_blocks_are_detected() {
    let template = tempfile::tempdir().unwrap();
    build_log(template.path()).await;

    // A block deleted from the middle of the log.
    let dir = copy_dir(template.path());
    {
        let db = redb::Database::open(dir.path().join(STORE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        store::remove_block(&mut txn.open_table(BLOCKS).unwrap(), 2).unwrap();
        txn.commit().unwrap();
    }
    let t = verify(dir.path())
        .unwrap_err()
        .tampering()
        .cloned()
        .unwrap();
    assert_eq!((t.block, t.kind), (2, TamperKind::Numbering { found: 3 }));

    // Block 3's content stored as block 4: the number in its signed header gives it away.
    let dir = copy_dir(template.path());
    write_block(dir.path(), 4, &read_block(dir.path(), 3));
    let t = verify(dir.path())
        .unwrap_err()
        .tampering()
        .cloned()
        .unwrap();
    assert_eq!((t.block, t.kind), (4, TamperKind::Numbering { found: 3 }));

    // A whole log re-signed with another key (both key files replaced) still verifies against
    // itself, but not against the public key an auditor kept.
    let original_key = std::fs::read_to_string(template.path().join("node.pub.pem")).unwrap();
    let other = tempfile::tempdir().unwrap();
    build_log(other.path()).await;
    verify(other.path()).unwrap();
    let t = verify_with_public_key(other.path(), &original_key)
        .unwrap_err()
        .tampering()
        .cloned()
        .unwrap();
    assert_eq!((t.block, t.kind), (0, TamperKind::BlockSignature));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_flipped_in_the_raw_store_file_fail_verification() {
    let template = tempfile::tempdir().unwrap();
    build_log(template.path()).await;
    let dir = copy_dir(template.path());
    let path = dir.path().join(STORE_FILE);
    let mut file = std::fs::read(&path).unwrap();
    // The marker is in the world state's keys (index entries) and values, and in block 4's
    // transaction, which is stored compressed (so its bytes may not show the marker);
    // copy-on-write may have left older copies too. Flip every occurrence.
    let marker = b"tamper-marker-7f3a";
    let mut flipped = 0;
    let mut i = 0;
    while i + marker.len() <= file.len() {
        if &file[i..i + marker.len()] == marker {
            file[i + 7] ^= 0x01; // '-' becomes ','
            flipped += 1;
            i += marker.len();
        } else {
            i += 1;
        }
    }
    assert!(
        flipped >= 3,
        "the marker should be stored several times, found {flipped}"
    );
    std::fs::write(&path, &file).unwrap();
    match verify(dir.path()) {
        Err(VerifyError::Tampered(t)) => {
            eprintln!("raw flip detected by the ledger's checks: {t}");
            assert_eq!(
                (t.block, t.tx_index, t.kind.clone()),
                (4, Some(0), TamperKind::TransactionHash),
                "{t}"
            );
        }
        // The flipped index key is in the state but no transaction wrote it.
        Err(VerifyError::Index(m)) => {
            eprintln!("raw flip detected by the index checks: {m:?}");
            // Either the flipped key (in the state, never written) or the original one (written,
            // now missing from the state) is named.
            assert_eq!(m.table, "state");
            assert!(
                m.key.contains("tamper-larker-7f3a") || m.key.contains("tamper-marker-7f3a"),
                "{m:?}"
            );
        }
        // redb's own page checksums may catch it first: that is a failed verification too.
        Err(VerifyError::Store { detail, .. }) => {
            eprintln!("raw flip detected by the store: {detail}");
            assert!(!detail.is_empty());
        }
        other => panic!("expected verification to fail, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_explains_what_it_cannot_read() {
    let empty = tempfile::tempdir().unwrap();
    let err = verify(empty.path()).unwrap_err();
    assert!(matches!(&err, VerifyError::NodeKey { .. }), "{err}");
    assert!(err.to_string().contains("node.pub.pem"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let ledger = EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let err = verify(dir.path()).unwrap_err();
    assert!(err.to_string().contains("running node"), "{err}");
    ledger.shutdown();
    assert_eq!(verify(dir.path()).unwrap().blocks, 1);

    std::fs::write(dir.path().join("node.pub.pem"), "not a key").unwrap();
    let err = verify(dir.path()).unwrap_err();
    assert!(
        matches!(&err, VerifyError::NodeKey { detail, .. } if detail.contains("PUBLIC KEY")),
        "{err}"
    );
    // Reopening rewrites the derived public key file from the private key.
    drop(ledger);
    EmbeddedLedger::open(dir.path(), EmbeddedOptions::default())
        .unwrap()
        .shutdown();
    verify(dir.path()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_history_and_index_edits_behind_the_logs_back_are_detected() {
    use redb::{ReadableDatabase, ReadableTable};
    use tom_gateway::ledger::embedded::store::{self, HISTORY, STATE, TX_IDS};
    let template = tempfile::tempdir().unwrap();
    build_log(template.path()).await;
    let report = verify(template.path()).unwrap();
    assert!(
        report.state_keys > 10 && report.history_entries >= report.state_keys,
        "{report}"
    );

    let entity_key = tom_contract::keys::key(tom_contract::keys::ENTITY, &["tl-1"]).unwrap();
    let stored_key = tom_gateway::ledger::embedded::state_key::pack(&entity_key);
    let edit = |f: &dyn Fn(&redb::WriteTransaction)| {
        let dir = copy_dir(template.path());
        {
            let db = redb::Database::open(dir.path().join(STORE_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            f(&txn);
            txn.commit().unwrap();
        }
        verify(dir.path()).unwrap_err()
    };
    let expect = |err: VerifyError, table: &str, key: &str| {
        let VerifyError::Index(m) = &err else {
            panic!("expected an index mismatch, got {err}")
        };
        assert_eq!((m.table, m.key.as_str()), (table, key), "{err}");
        assert!(err.to_string().contains(table), "{err}");
    };

    // The device "rejoined" by editing its state value (version kept).
    let err = edit(&|txn| {
        let mut state = txn.open_table(STATE).unwrap();
        let stored = state
            .get(stored_key.as_slice())
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        let found = store::decode_versioned(&entity_key, &stored).unwrap();
        let text = String::from_utf8(found.value)
            .unwrap()
            .replace("sensor", "camera");
        let value = store::encode_versioned(&entity_key, found.version, text.as_bytes());
        state
            .insert(stored_key.as_slice(), value.as_slice())
            .unwrap();
    });
    expect(err, "state", &entity_key);

    // A key deleted from the state.
    let err = edit(&|txn| {
        txn.open_table(STATE)
            .unwrap()
            .remove(stored_key.as_slice())
            .unwrap();
    });
    expect(err, "state", &entity_key);

    // A transaction dropped from the index (so its id could be replayed).
    let tx_id = {
        let db = redb::Database::open(template.path().join(STORE_FILE)).unwrap();
        let txn = db.begin_read().unwrap();
        let ids = txn.open_table(TX_IDS).unwrap();
        let first = ids
            .range::<[u8; 32]>(..)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .0
            .value();
        hex::encode(first)
    };
    let err = edit(&|txn| {
        txn.open_table(TX_IDS)
            .unwrap()
            .remove(store::packed_tx_id(&tx_id).unwrap())
            .unwrap();
    });
    let VerifyError::Index(m) = &err else {
        panic!("{err}")
    };
    assert_eq!(m.table, "tx_ids", "{err}");

    // A history entry removed.
    let err = edit(&|txn| {
        let mut history = txn.open_table(HISTORY).unwrap();
        let key = {
            let (first, _) = history.first().unwrap().unwrap();
            first.value()
        };
        history.remove(key).unwrap();
    });
    // Named when the log can tell whose entry it was; the digest says so either way.
    let VerifyError::Index(m) = &err else {
        panic!("expected an index mismatch, got {err}")
    };
    assert!(
        m.table == "history" || (m.table == "state" && !m.key.is_empty()),
        "{err}"
    );
}
