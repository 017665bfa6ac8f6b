//! `tom verify` resumed from an auditor-signed checkpoint (issue 13): the auditor signs what a
//! full verification found (a DSSE envelope over an in-toto statement) with their own key, and
//! a later run re-hashes the blocks it pins instead of re-checking their signatures.
//!
//! Real ECDSA throughout: the fixture auditors of org1 and org2 sign checkpoints, the node key
//! is the one the embedded ledger made, the creators are fixture identities. Stores are
//! tampered the way `embedded_verify.rs` does it: through redb, after the node shut down, so
//! only the ledger's own checks can notice.

mod embedded_common;

use std::path::Path;

use base64::Engine;
use embedded_common::*;
use tom_contract::claims::{Envelope, Statement};
use tom_contract::Timestamp;
use tom_gateway::ledger::embedded::codec::RawBlock;
use tom_gateway::ledger::embedded::store::{STATE, STORE_FILE};
use tom_gateway::ledger::embedded::{
    open_checkpoint, verify_from_checkpoint, verify_with_public_key, AuditorKey, AuditorPublicKey,
    CheckpointPredicate, EmbeddedLedger, EmbeddedOptions, TamperKind, VerifyError, VerifyReport,
    CHECKPOINT_PREDICATE,
};

const TOM: &str = env!("CARGO_BIN_EXE_tom");

/// 2026-11-30T12:00:00Z, when the tests' checkpoints say they were made.
const VERIFIED_AT: Timestamp = Timestamp {
    seconds: 1_796_040_000,
    nanos: 0,
};

fn auditor_key(org: &str) -> AuditorKey {
    AuditorKey::from_pkcs8_pem(tom_fixtures::identity(org, "auditor").key_pkcs8_pem).unwrap()
}

/// The org1 auditor's key as a verifier names it: by certificate, or by public key PEM.
fn auditor_certificate(org: &str) -> AuditorPublicKey {
    AuditorPublicKey::from_pem(tom_fixtures::identity(org, "auditor").cert_pem).unwrap()
}

fn node_key(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("node.pub.pem")).unwrap()
}

/// Genesis, RegisterOrg, IdentifyDevice, then `batches` blocks of three RecordData each: a
/// shut-down ledger of `3 + batches` blocks and `2 + 3 * batches` transactions.
async fn build_log(dir: &Path, batches: usize) {
    let ledger = EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap();
    register_org1(&ledger).await;
    identify(&ledger, "tl-1", "traffic-light-1").await;
    ledger.shutdown();
    grow(dir, 0, batches).await;
}

/// Reopen the ledger and add `batches` blocks of three RecordData (data ids from `first`).
async fn grow(dir: &Path, first: usize, batches: usize) {
    let ledger = EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap();
    let device = signer("org1", "traffic-light-1");
    for batch in 0..batches {
        let mut endorsements = Vec::new();
        for i in 0..3 {
            let id = format!("reading-{}", first + 3 * batch + i);
            let arg = bytes(&record_data_request(&id, "tl-1", "traffic-light-1"));
            endorsements.push(ledger.endorse(&device, "RecordData", &arg).await.unwrap());
        }
        for result in ledger.commit_batch(endorsements).await {
            result.unwrap();
        }
    }
    ledger.shutdown();
}

/// Flip one byte of block `number`, at an offset chosen from its layout.
fn flip(dir: &Path, number: u64, choose: impl Fn(&[u8], &RawBlock<'_>) -> usize) {
    let mut block = read_block(dir, number);
    let offset = {
        let raw = RawBlock::decode(&block).unwrap();
        choose(&block, &raw)
    };
    block[offset] ^= 0x01;
    write_block(dir, number, &block);
}

fn offset_of(block: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - block.as_ptr() as usize
}

/// A full verification of `dir` and the org1 auditor's checkpoint of it, as JSON.
fn checkpoint_of(dir: &Path) -> (VerifyReport, Vec<u8>) {
    let report = verify_with_public_key(dir, &node_key(dir)).unwrap();
    let envelope = auditor_key("org1")
        .sign_checkpoint(&report, VERIFIED_AT)
        .unwrap();
    (report, serde_json::to_vec(&envelope).unwrap())
}

/// Resume on `dir` from `envelope` with the org1 auditor's certificate.
fn resume(dir: &Path, envelope: &[u8]) -> Result<VerifyReport, VerifyError> {
    let checkpoint = open_checkpoint(envelope, &auditor_certificate("org1"))?;
    verify_from_checkpoint(dir, &node_key(dir), &checkpoint)
}

/// A checkpoint of the ledger in `dir`, re-signed by the trusted auditor with its predicate's
/// `store_format` changed to `format`.
fn checkpoint_claiming_format(dir: &Path, format: u64) -> Vec<u8> {
    let mut statement = payload_of(&checkpoint_of(dir).1);
    statement["predicate"]["store_format"] = format.into();
    let envelope = Envelope::sign(
        &serde_json::from_value::<Statement<serde_json::Value>>(statement).unwrap(),
        "",
        |m| tom_fixtures::identity("org1", "auditor").sign(m),
    )
    .unwrap();
    serde_json::to_vec(&envelope).unwrap()
}

fn payload_of(envelope: &[u8]) -> serde_json::Value {
    let envelope: Envelope = serde_json::from_slice(envelope).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&envelope.payload)
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_checks_signatures_only_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 2).await;
    let (first, envelope) = checkpoint_of(dir.path());
    assert_eq!((first.blocks, first.transactions), (5, 8));
    assert_eq!(first.creator_signatures, 8, "a full run checks every one");
    assert_eq!(
        (first.fully_checked_blocks, first.pinned.clone()),
        (5, None)
    );

    // What was signed: an in-toto statement about this ledger, pinned by the tip's hash.
    let statement = payload_of(&envelope);
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["predicateType"], CHECKPOINT_PREDICATE);
    assert_eq!(statement["subject"][0]["name"], "tom-ledger:tom");
    assert_eq!(statement["subject"][0]["digest"]["sha256"], first.tip_hash);
    let predicate: CheckpointPredicate =
        serde_json::from_value(statement["predicate"].clone()).unwrap();
    assert_eq!(predicate.height, 5);
    assert_eq!(predicate.tip_hash, first.tip_hash);
    assert_eq!(predicate.transactions, 8);
    assert_eq!(predicate.history_digest, first.history_digest);
    assert_eq!(predicate.history_digest.entries, first.history_entries);
    assert_eq!(predicate.node_public_key, first.node_public_key);
    assert!(predicate.node_public_key.starts_with("3059"), "DER SPKI");
    assert_eq!(predicate.verified_at, "2026-11-30T12:00:00Z");
    assert!(predicate.tool_version.starts_with("tom "));

    // Nothing new: the whole log is pinned, not one signature is checked, the tables still are.
    let same = resume(dir.path(), &envelope).unwrap();
    assert_eq!(
        (same.blocks, same.transactions, same.creator_signatures),
        (5, 8, 0)
    );
    assert_eq!(same.fully_checked_blocks, 0);
    assert_eq!(
        (same.state_keys, same.history_digest.clone()),
        (first.state_keys, first.history_digest.clone())
    );

    // Two more blocks (six transactions) later: only those get signature checks.
    grow(dir.path(), 100, 2).await;
    let full = verify_with_public_key(dir.path(), &node_key(dir.path())).unwrap();
    let resumed = resume(dir.path(), &envelope).unwrap();
    assert_eq!((full.blocks, full.transactions), (7, 14));
    assert_eq!(full.creator_signatures, 14);
    assert_eq!(resumed.creator_signatures, 6, "{resumed}");
    assert_eq!(resumed.fully_checked_blocks, 2);
    // It reaches the very same result: the history digest continued from the checkpoint's
    // equals the one replayed from genesis.
    assert_eq!(
        (
            resumed.blocks,
            resumed.transactions,
            resumed.invalid_transactions,
            &resumed.tip_hash,
            resumed.state_keys,
            resumed.history_entries,
            &resumed.history_digest
        ),
        (
            full.blocks,
            full.transactions,
            full.invalid_transactions,
            &full.tip_hash,
            full.state_keys,
            full.history_entries,
            &full.history_digest
        )
    );
    let pin = resumed.pinned.clone().unwrap();
    assert_eq!(pin.height, 5);
    assert_eq!(pin.signer, auditor_key("org1").fingerprint());
    // The output states the trust basis.
    let text = resumed.to_string();
    assert!(
        text.contains(&format!(
            "blocks 0..=4 pinned by checkpoint signed by {} on 2026-11-30T12:00:00Z",
            pin.signer
        )),
        "{text}"
    );
    assert!(
        text.contains("blocks 5..=6 fully checked (6 creator signatures verified)"),
        "{text}"
    );
    assert!(
        full.to_string()
            .contains("blocks 0..=6 fully checked (14 creator signatures verified)"),
        "{full}"
    );

    // The auditor's public key PEM works as well as the certificate.
    let public = AuditorPublicKey::from_pem(&public_key_pem_of_fixture("org1")).unwrap();
    assert_eq!(public.fingerprint(), pin.signer);
    let checkpoint = open_checkpoint(&envelope, &public).unwrap();
    assert_eq!(
        verify_from_checkpoint(dir.path(), &node_key(dir.path()), &checkpoint).unwrap(),
        resumed
    );

    // A resumed run can sign the next checkpoint; resuming from it checks nothing again.
    let next = auditor_key("org1")
        .sign_checkpoint(&resumed, VERIFIED_AT)
        .unwrap();
    let next = serde_json::to_vec(&next).unwrap();
    let again = resume(dir.path(), &next).unwrap();
    assert_eq!(
        (again.creator_signatures, again.fully_checked_blocks),
        (0, 0)
    );
    assert_eq!(again.history_digest, full.history_digest);
}

/// The SubjectPublicKeyInfo PEM of a fixture identity's key (what an auditor would hand out
/// instead of a certificate).
fn public_key_pem_of_fixture(org: &str) -> String {
    use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
    let key = p256::SecretKey::from_pkcs8_pem(tom_fixtures::identity(org, "auditor").key_pkcs8_pem)
        .unwrap();
    key.public_key().to_public_key_pem(LineEnding::LF).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_before_the_checkpoint_are_still_pinned_by_their_hashes() {
    let template = tempfile::tempdir().unwrap();
    build_log(template.path(), 2).await;
    let (_, envelope) = checkpoint_of(template.path());
    grow(template.path(), 100, 2).await;
    resume(template.path(), &envelope).unwrap();

    // One byte of a transaction in block 3 (pinned): caught at that transaction.
    let dir = copy_dir(template.path());
    flip(dir.path(), 3, |b, r| {
        offset_of(b, r.transactions[1]) + r.transactions[1].len() / 2
    });
    let err = resume(dir.path(), &envelope).unwrap_err();
    let t = err.tampering().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(
        (t.block, t.tx_index, t.kind.clone()),
        (3, Some(1), TamperKind::TransactionHash),
        "{err}"
    );

    // The header of block 2 (its timestamp): no signature is checked there any more, but
    // block 3 no longer links to it.
    let dir = copy_dir(template.path());
    flip(dir.path(), 2, |b, r| {
        offset_of(b, r.header_bytes) + 5 + 8 + 64 + 7
    });
    let t = resume(dir.path(), &envelope)
        .unwrap_err()
        .tampering()
        .cloned()
        .unwrap();
    assert_eq!((t.block, t.kind), (3, TamperKind::HashLink));

    // The header of block 4, the checkpoint's tip: its hash is no longer the one signed.
    let dir = copy_dir(template.path());
    flip(dir.path(), 4, |b, r| {
        offset_of(b, r.header_bytes) + 5 + 8 + 64 + 7
    });
    let err = resume(dir.path(), &envelope).unwrap_err();
    let t = err.tampering().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(t.block, 4, "{err}");
    assert!(matches!(&t.kind, TamperKind::CheckpointTip { .. }), "{err}");

    // A block after the checkpoint gets every check: a flipped node signature is caught.
    let dir = copy_dir(template.path());
    flip(dir.path(), 6, |b, r| {
        offset_of(b, r.signature) + r.signature.len() - 1
    });
    let t = resume(dir.path(), &envelope)
        .unwrap_err()
        .tampering()
        .cloned()
        .unwrap();
    assert_eq!((t.block, t.kind), (6, TamperKind::BlockSignature));

    // The derived tables are still checked over the whole store: a state value written before
    // the checkpoint, edited behind the log's back.
    let dir = copy_dir(template.path());
    let entity_key = tom_contract::keys::key(tom_contract::keys::ENTITY, &["tl-1"]).unwrap();
    {
        let db = redb::Database::open(dir.path().join(STORE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(STATE)
            .unwrap()
            .remove(tom_gateway::ledger::embedded::state_key::pack(&entity_key).as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    match resume(dir.path(), &envelope).unwrap_err() {
        VerifyError::Index(m) => assert_eq!((m.table, m.key.as_str()), ("state", &*entity_key)),
        other => panic!("expected a state mismatch, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_that_do_not_vouch_for_this_log_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 2).await;
    let report = verify_with_public_key(dir.path(), &node_key(dir.path())).unwrap();

    // Signed by another auditor than the one the verifier trusts.
    let foreign = auditor_key("org2")
        .sign_checkpoint(&report, VERIFIED_AT)
        .unwrap();
    let err = resume(dir.path(), &serde_json::to_vec(&foreign).unwrap()).unwrap_err();
    assert!(matches!(err, VerifyError::Checkpoint(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("does not verify with the auditor key")
            && message.contains(&auditor_key("org1").fingerprint())
            && message.contains(&auditor_key("org2").fingerprint()),
        "names the key it expected and the one the envelope names: {message}"
    );

    // The predicate altered after signing (its height lowered, so more would be checked... or
    // raised, so less): the signature no longer covers it.
    let mut envelope: Envelope = serde_json::from_slice(&checkpoint_of(dir.path()).1).unwrap();
    let mut statement = payload_of(&serde_json::to_vec(&envelope).unwrap());
    statement["predicate"]["height"] = 3.into();
    envelope.payload =
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&statement).unwrap());
    let err = resume(dir.path(), &serde_json::to_vec(&envelope).unwrap()).unwrap_err();
    assert!(
        err.to_string().contains("altered after it was signed"),
        "{err}"
    );

    // Signed by the right key but not a verification checkpoint.
    let other = Envelope::sign(
        &Statement::new(
            "tom-ledger:tom",
            &report.tip_hash,
            "urn:tom:predicate:data-generation:v1",
            serde_json::json!({}),
        ),
        "",
        |m| tom_fixtures::identity("org1", "auditor").sign(m),
    )
    .unwrap();
    let err = resume(dir.path(), &serde_json::to_vec(&other).unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("not a TOM verification checkpoint")
            && err.to_string().contains("predicateType"),
        "{err}"
    );
    let err = resume(dir.path(), b"{\"not\": \"an envelope\"}").unwrap_err();
    assert!(err.to_string().contains("not a DSSE envelope"), "{err}");
    let err = resume(dir.path(), &vec![b' '; 100_000]).unwrap_err();
    assert!(err.to_string().contains("100000 bytes"), "{err}");

    // A checkpoint of an older storage format (its history digest keyed differently), signed
    // by the trusted auditor: refused, saying to verify in full once.
    let err = resume(dir.path(), &checkpoint_claiming_format(dir.path(), 2)).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Checkpoint(m) if m.contains("storage format 2") && m.contains("full verification")),
        "{err}"
    );
    // Format 3's digest is keyed as format 4's (format 4 added value dictionaries only): its
    // checkpoint still resumes.
    resume(dir.path(), &checkpoint_claiming_format(dir.path(), 3)).unwrap();

    // A checkpoint of another ledger whose node key differs: refused before any block is read.
    let elsewhere = tempfile::tempdir().unwrap();
    build_log(elsewhere.path(), 1).await;
    let (_, their) = checkpoint_of(elsewhere.path());
    let err = resume(dir.path(), &their).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Checkpoint(m) if m.contains("made against node key")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_or_truncated_log_is_refused_naming_the_block() {
    let original = tempfile::tempdir().unwrap();
    build_log(original.path(), 2).await;
    let backup = copy_dir(original.path());
    let (_, at_five) = checkpoint_of(original.path());

    // The node, which holds its key, replaces the log with another history of the same shape,
    // signed with the same key: it verifies on its own, but not against the checkpoint.
    let replaced = tempfile::tempdir().unwrap();
    std::fs::copy(
        original.path().join("node.key.pem"),
        replaced.path().join("node.key.pem"),
    )
    .unwrap();
    build_log(replaced.path(), 3).await;
    verify_with_public_key(replaced.path(), &node_key(original.path())).unwrap();
    let err = resume(replaced.path(), &at_five).unwrap_err();
    let t = err.tampering().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(t.block, 4, "{err}");
    assert!(matches!(&t.kind, TamperKind::CheckpointTip { .. }), "{err}");
    assert!(err.to_string().contains("block 4"), "{err}");

    // The log grows to 7 blocks and is checkpointed; then a backup of 5 blocks is restored.
    grow(original.path(), 100, 2).await;
    let (report, at_seven) = checkpoint_of(original.path());
    assert_eq!(report.blocks, 7);
    let err = resume(backup.path(), &at_seven).unwrap_err();
    let t = err.tampering().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(
        (t.block, t.kind.clone()),
        (
            5,
            TamperKind::Truncated {
                checkpoint_height: 7
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("blocks were removed"), "{err}");
}

/// The command line: `--checkpoint-out`/`--checkpoint-key`, then `--resume` with the auditor's
/// certificate; a wrong key is refused with a message naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tom_verify_writes_and_resumes_from_a_checkpoint() {
    let data = tempfile::tempdir().unwrap();
    let ledger_dir = data.path().join("ledger");
    std::fs::create_dir(&ledger_dir).unwrap();
    build_log(&ledger_dir, 1).await;
    let files = tempfile::tempdir().unwrap();
    let key = files.path().join("auditor.key.pem");
    let cert = files.path().join("auditor.pem");
    let other_cert = files.path().join("other.pem");
    std::fs::write(
        &key,
        tom_fixtures::identity("org1", "auditor").key_pkcs8_pem,
    )
    .unwrap();
    std::fs::write(&cert, tom_fixtures::identity("org1", "auditor").cert_pem).unwrap();
    std::fs::write(
        &other_cert,
        tom_fixtures::identity("org2", "auditor").cert_pem,
    )
    .unwrap();
    let checkpoint = files.path().join("checkpoint.json");
    let tom = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(TOM)
            .arg("verify")
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, out, err) = tom(&[
        "--checkpoint-out".as_ref(),
        checkpoint.as_os_str(),
        "--checkpoint-key".as_ref(),
        key.as_os_str(),
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("ledger intact: 4 blocks"), "{out}");
    assert!(out.contains("checkpoint written to"), "{out}");
    let statement = payload_of(&std::fs::read(&checkpoint).unwrap());
    assert_eq!(statement["predicate"]["height"], 4);

    grow(&ledger_dir, 100, 1).await;
    let (ok, out, err) = tom(&[
        "--resume".as_ref(),
        checkpoint.as_os_str(),
        "--checkpoint-public-key".as_ref(),
        cert.as_os_str(),
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("ledger intact: 5 blocks"), "{out}");
    assert!(
        out.contains("blocks 0..=3 pinned by checkpoint signed by sha256:"),
        "{out}"
    );
    assert!(
        out.contains("blocks 4..=4 fully checked (3 creator signatures verified)"),
        "{out}"
    );

    let (ok, out, err) = tom(&[
        "--resume".as_ref(),
        checkpoint.as_os_str(),
        "--checkpoint-public-key".as_ref(),
        other_cert.as_os_str(),
    ]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("checkpoint.json") && err.contains("does not verify with the auditor key"),
        "{err}"
    );

    // The auditor's own copy of the node key: the right one verifies, another is caught at
    // the genesis block's signature.
    let kept = files.path().join("node.pub.pem");
    std::fs::copy(ledger_dir.join("node.pub.pem"), &kept).unwrap();
    let (ok, out, err) = tom(&["--node-public-key".as_ref(), kept.as_os_str()]);
    assert!(
        ok && out.contains("blocks 0..=4 fully checked"),
        "{out}{err}"
    );
    let wrong = files.path().join("wrong.pub.pem");
    std::fs::write(&wrong, public_key_pem_of_fixture("org2")).unwrap();
    let (ok, out, err) = tom(&["--node-public-key".as_ref(), wrong.as_os_str()]);
    assert!(
        !ok && err.contains("block 0") && err.contains("node's block signature"),
        "{out}{err}"
    );

    // The options come in pairs.
    let (ok, _, err) = tom(&["--resume".as_ref(), checkpoint.as_os_str()]);
    assert!(!ok && err.contains("--checkpoint-public-key"), "{err}");
    let (ok, _, err) = tom(&["--checkpoint-key".as_ref(), cert.as_os_str()]);
    assert!(!ok && err.contains("--checkpoint-out"), "{err}");
    // A certificate is no signing key: refused before anything is verified.
    let (ok, _, err) = tom(&[
        "--checkpoint-out".as_ref(),
        checkpoint.as_os_str(),
        "--checkpoint-key".as_ref(),
        cert.as_os_str(),
    ]);
    assert!(
        !ok && err.contains("--checkpoint-key") && err.contains("PKCS#8"),
        "{err}"
    );
}
