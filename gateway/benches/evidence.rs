//! Evidence bundles: size, export time and offline verification time for lineages of about 10,
//! 100 and 1,000 records on the embedded ledger.
//!
//! The lineage is a fan-in: a traffic light records N-3 counts, then one summary derived from all
//! of them; the bundle is the summary's upstream lineage (every count's PROV-DATA, the
//! summary's, the light's join, and the organisation's registration when a key read names it).
//!
//! Run: `cargo bench -p tom-gateway --bench evidence` (`TOM_BENCH_SIZES=10,100` to choose).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tom_contract::requests::{Direction, IdentifyDevice, LineageQuery, RecordData};
use tom_contract::simulation::DEFAULT_CHANNEL;
use tom_gateway::evidence;
use tom_gateway::ledger::embedded::{EmbeddedLedger, EmbeddedOptions};
use tom_gateway::ledger::{Ledger, SigningIdentity};

fn signer(org: &str, name: &str) -> SigningIdentity {
    let id = tom_fixtures::identity(org, name);
    SigningIdentity::from_pem(id.msp_id, id.cert_pem, id.key_pkcs8_pem).unwrap()
}

fn data(id: &str, inputs: Vec<String>) -> Vec<u8> {
    let light = tom_fixtures::identity("org1", "traffic-light-1");
    let hash = format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, id.as_bytes()))
    );
    let request = RecordData {
        data_id: id.into(),
        kind: "count".into(),
        hash,
        size: 8,
        location: format!("file:///data/{id}"),
        generated_by: "light-1".into(),
        derived_from: inputs,
        claim: Default::default(),
    }
    .sign(DEFAULT_CHANNEL, "", |m| light.sign(m))
    .unwrap();
    serde_json::to_vec(&request).unwrap()
}

async fn lineage_of(records: usize) -> (tempfile::TempDir, Arc<EmbeddedLedger>) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(EmbeddedLedger::open(dir.path(), EmbeddedOptions::default()).unwrap());
    let org = tom_fixtures::org("org1");
    ledger
        .submit(
            &signer("org1", "admin"),
            "RegisterOrg",
            &serde_json::to_vec(&json!({ "msp_id": org.msp_id, "name": "org1", "ca_certificates": [org.ca_cert_pem] })).unwrap(),
        )
        .await
        .unwrap();
    let light = tom_fixtures::identity("org1", "traffic-light-1");
    let identify = IdentifyDevice::signed(
        "light-1",
        light.msp_id,
        "sensor",
        light.cert_pem,
        "n-1",
        DEFAULT_CHANNEL,
        |m| light.sign(m),
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
    let counts: Vec<String> = (0..records.saturating_sub(3))
        .map(|i| format!("count-{i}"))
        .collect();
    let device = signer("org1", "traffic-light-1");
    // Submitted 64 at a time so blocks fill up as they would under load.
    for chunk in counts.chunks(64) {
        let mut tasks = Vec::new();
        for id in chunk {
            let (ledger, device, body) = (ledger.clone(), device.clone(), data(id, vec![]));
            tasks.push(tokio::spawn(async move {
                ledger.submit(&device, "RecordData", &body).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    ledger
        .submit(&device, "RecordData", &data("summary", counts))
        .await
        .unwrap();
    (dir, ledger)
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("TOM_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 1000]);
    println!(
        "{:>8} {:>8} {:>7} {:>12} {:>10} {:>10}",
        "records", "txs", "blocks", "bundle bytes", "export ms", "verify ms"
    );
    for n in sizes {
        let (_dir, ledger) = lineage_of(n).await;
        let query = LineageQuery {
            id: "summary".into(),
            direction: Direction::Up,
            depth: Some(1),
        };
        let auditor = signer("org1", "auditor");
        let started = Instant::now();
        let bundle = ledger.evidence(&auditor, &query).await.unwrap();
        let export = started.elapsed();
        let bytes = serde_json::to_vec(&bundle).unwrap();
        // Best of three: the first run also warms the certificate memo.
        let mut best = Duration::MAX;
        let mut verified = None;
        for _ in 0..3 {
            let started = Instant::now();
            verified = Some(evidence::verify(&bytes, &evidence::Options::default()).unwrap());
            best = best.min(started.elapsed());
        }
        let verified = verified.unwrap();
        println!(
            "{:>8} {:>8} {:>7} {:>12} {:>10.1} {:>10.1}",
            verified.records,
            verified.transactions,
            verified.tip_block - verified.first_block + 1,
            bytes.len(),
            export.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e3
        );
        ledger.shutdown();
    }
}
