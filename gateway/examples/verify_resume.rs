//! What an auditor's checkpoint saves `tom verify`: grows an embedded ledger to
//! `TOM_RESUME_TRANSACTIONS` transactions (default 10 000), verifies it in full and signs a
//! checkpoint with the fixture auditor's key, adds `TOM_RESUME_MORE` transactions (default
//! 1 %), then verifies again in full and resumed from the checkpoint, and prints time,
//! transactions/s (and per core) and creator signatures checked for each.
//!
//! ```text
//! cargo run -p tom-gateway --example verify_resume [--release]
//! ```
//!
//! Real ECDSA everywhere (fixture identities from `tom-fixtures`); the ledger lives in a
//! temporary directory. Every figure depends on the build: say which one you quote.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tom_contract::requests::{IdentifyDevice, RecordData};
use tom_contract::simulation::DEFAULT_CHANNEL;
use tom_contract::Timestamp;
use tom_gateway::ledger::embedded::{
    open_checkpoint, verify_from_checkpoint, verify_with_public_key, AuditorKey, AuditorPublicKey,
    EmbeddedLedger, EmbeddedOptions, VerifyReport,
};
use tom_gateway::ledger::{Ledger, SigningIdentity};

fn signer(org: &str, name: &str) -> SigningIdentity {
    let id = tom_fixtures::identity(org, name);
    SigningIdentity::from_pem(id.msp_id, id.cert_pem, id.key_pkcs8_pem).unwrap()
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a count"))
        })
        .unwrap_or(default)
}

/// `count` RecordData of device `tl-1`, data ids from `first`, committed in blocks of 256.
async fn record(ledger: &EmbeddedLedger, first: usize, count: usize) {
    let device = signer("org1", "traffic-light-1");
    let fixture = tom_fixtures::identity("org1", "traffic-light-1");
    let mut next = first;
    while next < first + count {
        let end = (next + 256).min(first + count);
        let mut endorsements = Vec::new();
        for i in next..end {
            let data_id = format!("reading-{i}");
            let hash = format!(
                "sha256:{}",
                hex::encode(ring::digest::digest(
                    &ring::digest::SHA256,
                    data_id.as_bytes()
                ))
            );
            let request = RecordData {
                data_id: data_id.clone(),
                kind: "reading".to_owned(),
                hash,
                size: 42,
                location: format!("file:///data/{data_id}"),
                generated_by: "tl-1".to_owned(),
                derived_from: vec![],
                claim: Default::default(),
            }
            .sign(DEFAULT_CHANNEL, "", |m| fixture.sign(m))
            .unwrap();
            let arg = serde_json::to_vec(&request).unwrap();
            endorsements.push(ledger.endorse(&device, "RecordData", &arg).await.unwrap());
        }
        for result in ledger.commit_batch(endorsements).await {
            result.unwrap();
        }
        next = end;
    }
}

async fn grow(dir: &Path, first: usize, count: usize) {
    let ledger = EmbeddedLedger::open(dir, EmbeddedOptions::default()).unwrap();
    if first == 0 {
        let org = tom_fixtures::org("org1");
        let arg = serde_json::json!({
            "msp_id": org.msp_id, "name": "org1", "ca_certificates": [org.ca_cert_pem]
        });
        ledger
            .submit(
                &signer("org1", "admin"),
                "RegisterOrg",
                &serde_json::to_vec(&arg).unwrap(),
            )
            .await
            .unwrap();
        let device = tom_fixtures::identity("org1", "traffic-light-1");
        let identify = IdentifyDevice::signed(
            "tl-1",
            device.msp_id,
            "sensor",
            device.cert_pem,
            "nonce-tl-1",
            DEFAULT_CHANNEL,
            |m| device.sign(m),
        )
        .unwrap();
        ledger
            .submit(
                &signer("org1", "orchestrator"),
                "IdentifyDevice",
                &serde_json::to_vec(&identify).unwrap(),
            )
            .await
            .unwrap();
    }
    record(&ledger, first, count).await;
    ledger.shutdown();
}

fn line(what: &str, report: &VerifyReport, took: Duration) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rate = report.transactions as f64 / took.as_secs_f64();
    println!(
        "{what:<34} {:>8} tx {:>9.3} s {:>10.0} tx/s {:>9.0} tx/s/core  {:>6} creator signatures, {} blocks pinned",
        report.transactions,
        took.as_secs_f64(),
        rate,
        rate / cores as f64,
        report.creator_signatures,
        report.blocks - report.fully_checked_blocks,
    );
}

#[tokio::main]
async fn main() {
    let transactions = env_count("TOM_RESUME_TRANSACTIONS", 10_000);
    let more = env_count("TOM_RESUME_MORE", transactions.div_ceil(100));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let build = if cfg!(debug_assertions) {
        "dev (debug assertions)"
    } else {
        "release"
    };
    println!(
        "build: {build}; {cores} cores; the ledger grows to {transactions} + {more} transactions"
    );
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    grow(dir.path(), 0, transactions).await;
    println!("grown in {:.1} s", started.elapsed().as_secs_f64());
    let node_key = std::fs::read_to_string(dir.path().join("node.pub.pem")).unwrap();

    let started = Instant::now();
    let full = verify_with_public_key(dir.path(), &node_key).unwrap();
    line("full verify", &full, started.elapsed());
    let auditor = tom_fixtures::identity("org1", "auditor");
    let envelope = AuditorKey::from_pkcs8_pem(auditor.key_pkcs8_pem)
        .unwrap()
        .sign_checkpoint(
            &full,
            Timestamp {
                seconds: 1_796_040_000,
                nanos: 0,
            },
        )
        .unwrap();
    let envelope = serde_json::to_vec(&envelope).unwrap();
    println!(
        "checkpoint: {} bytes of DSSE JSON (payload {} bytes)",
        envelope.len(),
        base64::engine::general_purpose::STANDARD
            .decode(
                serde_json::from_slice::<serde_json::Value>(&envelope).unwrap()["payload"]
                    .as_str()
                    .unwrap()
            )
            .unwrap()
            .len()
    );
    let key = AuditorPublicKey::from_pem(auditor.cert_pem).unwrap();

    let started = Instant::now();
    let checkpoint = open_checkpoint(&envelope, &key).unwrap();
    let same = verify_from_checkpoint(dir.path(), &node_key, &checkpoint).unwrap();
    line("resumed, no new block", &same, started.elapsed());

    grow(dir.path(), transactions, more).await;
    let started = Instant::now();
    let full = verify_with_public_key(dir.path(), &node_key).unwrap();
    line(&format!("full verify (+{more})"), &full, started.elapsed());
    let started = Instant::now();
    let checkpoint = open_checkpoint(&envelope, &key).unwrap();
    let resumed = verify_from_checkpoint(dir.path(), &node_key, &checkpoint).unwrap();
    line(&format!("resumed (+{more})"), &resumed, started.elapsed());
    assert_eq!(resumed.history_digest, full.history_digest);
    assert_eq!(resumed.tip_hash, full.tip_hash);
    println!("{resumed}");
}
