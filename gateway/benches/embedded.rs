//! Throughput and latency of the embedded ledger, in process (no HTTP), with durable commits.
//!
//! For identify (IdentifyDevice), record-data (RecordData) and exec (ExecContract), with 1, 8
//! and 64 concurrent submitters, it prints actions per second and p50/p99 latency, and, in the
//! same run, this machine's ECDSA P-256 sign and verify rates, so the ratio to the
//! signature-bound limit is visible: each action costs one creator signature (the gateway signs
//! the proposal) plus the contract's verifications (for identify the device chain and id-proof,
//! for record-data the data signature; the caller's chain is verified once and remembered).
//! Beside each run it prints the CPU the whole process kept busy and its CPU per action, which
//! say whether a run is bound by the cores or by waiting (the fsync, the serial committer).
//! Last it evaluates fresh IdentifyDevice requests without ordering them: the contract's own
//! CPU per action, all checks included, plus the proposal signature is the most any ledger could
//! reach on these cores, and the submitted identify run is compared with that ceiling.
//!
//! Run: `cargo bench -p tom-gateway --bench embedded` (`TOM_BENCH_SCALE=0.2` for a quick run,
//! `TOM_BENCH_DIR` to put the store on another disk, `TOM_BENCH_ENDORSERS` to bound simulations
//! otherwise than by the number of cores, `TOM_BENCH_STORE_SYNC_MS` for another store sync
//! interval).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;
use tom_contract::requests::{IdentifyDevice, RecordData};
use tom_contract::simulation::DEFAULT_CHANNEL;
use tom_gateway::ledger::embedded::{EmbeddedLedger, EmbeddedOptions};
use tom_gateway::ledger::{Ledger, SigningIdentity};

const CONCURRENCY: [usize; 3] = [1, 8, 64];
/// The concurrency at which the contract alone is measured and compared (the busiest run).
const CEILING_CONCURRENCY: usize = 64;

fn signer(org: &str, name: &str) -> SigningIdentity {
    let id = tom_fixtures::identity(org, name);
    SigningIdentity::from_pem(id.msp_id, id.cert_pem, id.key_pkcs8_pem).unwrap()
}

/// Operations per second of `op` on one thread, over about `budget`.
fn rate(budget: Duration, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..50 {
            op();
        }
        n += 50;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

struct Run {
    actions: usize,
    wall: Duration,
    /// CPU seconds the whole process used meanwhile (every thread, user and system).
    cpu: f64,
    /// CPU seconds of the committer thread meanwhile.
    commit_cpu: f64,
    latencies: Vec<Duration>,
    blocks: u64,
}

/// How a run hands its requests to the ledger.
#[derive(Clone, Copy)]
enum Mode {
    /// Endorsed, ordered and committed durably: what an orchestrator gets.
    Submit,
    /// Only run by the contract against the committed state (an evaluation): the contract's
    /// own cost, with no proposal signature, block, store write or fsync.
    Evaluate,
}

/// Hand every request in `requests` to the ledger as `who`, from `concurrency` tasks.
async fn run(
    ledger: &Arc<EmbeddedLedger>,
    who: &SigningIdentity,
    function: &'static str,
    requests: Vec<Vec<u8>>,
    concurrency: usize,
    mode: Mode,
) -> Run {
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let height = ledger.height();
    let cpu_before = process_cpu_seconds();
    let commit_before = thread_cpu_seconds(COMMITTER_THREAD).unwrap_or(0.0);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (ledger, who, requests, next) =
            (ledger.clone(), who.clone(), requests.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(i) else {
                    break;
                };
                let t = Instant::now();
                let outcome = match mode {
                    Mode::Submit => ledger.submit(&who, function, request).await.map(drop),
                    Mode::Evaluate => ledger.evaluate(&who, function, request).await.map(drop),
                };
                if let Err(e) = outcome {
                    panic!("{function} #{i} failed: {e}");
                }
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let wall = start.elapsed();
    let cpu = process_cpu_seconds() - cpu_before;
    let commit_cpu = thread_cpu_seconds(COMMITTER_THREAD).unwrap_or(0.0) - commit_before;
    latencies.sort();
    Run {
        actions: requests.len(),
        wall,
        cpu,
        commit_cpu,
        latencies,
        blocks: ledger.height() - height,
    }
}

fn report(action: &str, concurrency: usize, r: &Run) -> f64 {
    let per_second = r.actions as f64 / r.wall.as_secs_f64();
    println!(
        "{action:<12} {concurrency:>4} {:>7} {per_second:>10.0} {:>9.2} {:>9.2} {:>7} {:>8.1} {:>6.2} {:>8.0} {:>9.0}",
        r.actions,
        percentile(&r.latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&r.latencies, 0.99).as_secs_f64() * 1e3,
        r.blocks,
        r.actions as f64 / r.blocks.max(1) as f64,
        r.cpu / r.wall.as_secs_f64(),
        r.cpu * 1e6 / r.actions as f64,
        r.commit_cpu * 1e6 / r.actions as f64,
    );
    per_second
}

/// User + system CPU seconds of this whole process so far (Linux only; 0 elsewhere).
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised name: utime is field 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0 // USER_HZ is 100 on Linux
}

/// The committer's thread name as the kernel keeps it (15 bytes of `tom-ledger-commit`).
const COMMITTER_THREAD: &str = "tom-ledger-comm";

/// User + system CPU seconds of this process's thread named `name` (Linux only).
fn thread_cpu_seconds(name: &str) -> Option<f64> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path();
        if std::fs::read_to_string(path.join("comm")).ok()?.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).ok()?;
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        return Some(ticks / 100.0); // USER_HZ is 100 on Linux
    }
    None
}

fn print_load(when: &str) {
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        println!(
            "load average at the {when} (1/5/15 min): {}",
            load.join(" ")
        );
    }
}

fn main() {
    let scale: f64 = std::env::var("TOM_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let count = |c: usize| -> usize {
        ((match c {
            1 => 400.0,
            8 => 3000.0,
            _ => 6000.0,
        }) * scale)
            .max(10.0) as usize
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    print_load("start");

    // --- the signature-bound limit -------------------------------------------------------------
    let orchestrator = signer("org1", "orchestrator");
    let message =
        b"tom/v1 benchmark message: a proposal is about this long, give or take a certificate";
    let gateway_sign = rate(Duration::from_secs(1), || {
        std::hint::black_box(orchestrator.sign(message));
    });
    let ring_key = {
        let pem = tom_fixtures::identity("org1", "orchestrator").key_pkcs8_pem;
        let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(der)
            .unwrap();
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &der,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap()
    };
    let rng = ring::rand::SystemRandom::new();
    let ring_sign = rate(Duration::from_secs(1), || {
        std::hint::black_box(ring_key.sign(&rng, message).unwrap());
    });
    let signature = orchestrator.sign(message);
    let cert = tom_contract::identity::Certificate::from_pem(
        tom_fixtures::identity("org1", "orchestrator").cert_pem,
    )
    .unwrap();
    let verify = rate(Duration::from_secs(1), || {
        assert!(cert.verify(message, &signature));
    });
    println!("ECDSA P-256 on this machine ({cores} cores), per core:");
    println!("  sign   (SigningIdentity::sign, ring)      {gateway_sign:>9.0}/s");
    println!("  sign   (ring)                                 {ring_sign:>9.0}/s");
    println!("  verify (ring, as the contract)                {verify:>9.0}/s");
    // Per action: one creator signature, and (identify) 2 / (record-data) 1 / (exec) 0 contract
    // verifications. The caller's chain is verified once per certificate and CA, then
    // remembered (`Certificate::check_issued_by`), so after the first it costs none.
    let limit = |verifies: f64| cores as f64 / (1.0 / gateway_sign + verifies / verify);
    println!(
        "  signature-bound limit on {cores} cores: identify {:.0}/s, record-data {:.0}/s, exec {:.0}/s",
        limit(2.0),
        limit(1.0),
        limit(0.0)
    );

    // --- set-up ------------------------------------------------------------------------------
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    let base = std::env::var_os("TOM_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    println!("\nembedded ledger in {}", dir.path().display());
    // TOM_BENCH_NON_DURABLE=1 shows what the fsync costs; the figures that count are durable.
    let durable = std::env::var_os("TOM_BENCH_NON_DURABLE").is_none();
    // TOM_BENCH_ENDORSERS=n tries another bound on simulations running at once.
    let defaults = EmbeddedOptions::default();
    let endorsers = std::env::var("TOM_BENCH_ENDORSERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(defaults.endorsers);
    // TOM_BENCH_STORE_SYNC_MS=n: how often the store commit is durable (0: every block,
    // without the block journal).
    let store_sync_interval = std::env::var("TOM_BENCH_STORE_SYNC_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(defaults.store_sync_interval);
    let options = EmbeddedOptions {
        durable,
        endorsers,
        store_sync_interval,
        ..defaults
    };
    let ledger = Arc::new(EmbeddedLedger::open(dir.path(), options).unwrap());
    println!(
        "durable (fsync per block): {durable}; store synced every {} ms; endorsers: {endorsers}",
        store_sync_interval.as_millis()
    );
    let device = signer("org1", "traffic-light-1");
    let org = tom_fixtures::org("org1");

    // Fresh device identities for IdentifyDevice (one per action, and as many again for the
    // contract-alone run, so no device chain is checked twice), issued before timing starts.
    let total_identify: usize =
        CONCURRENCY.iter().map(|c| count(*c)).sum::<usize>() + count(CEILING_CONCURRENCY);
    let issue_start = Instant::now();
    let ca = org.ca();
    let mut identify_requests: Vec<Vec<u8>> = (0..total_identify)
        .map(|i| {
            let device_id = format!("bench-device-{i}");
            let id = tom_fixtures::pki::issue_identity(
                &ca,
                &device_id,
                Some("client"),
                Some("device"),
                (2024, 1, 1),
                (2099, 12, 31),
            )
            .unwrap();
            let nonce = format!("bench-nonce-{i}");
            let request = IdentifyDevice::signed(
                &device_id,
                org.msp_id,
                "sensor",
                &id.cert_pem,
                &nonce,
                DEFAULT_CHANNEL,
                |m| tom_fixtures::pki::sign_p256(&id.key_pkcs8_pem, m).unwrap(),
            )
            .unwrap();
            serde_json::to_vec(&request).unwrap()
        })
        .collect();
    println!(
        "issued {total_identify} device identities in {:.1}s",
        issue_start.elapsed().as_secs_f64()
    );

    runtime.block_on(async {
        let arg = json!({ "msp_id": org.msp_id, "name": "org1", "ca_certificates": [org.ca_cert_pem] });
        ledger.submit(&signer("org1", "admin"), "RegisterOrg", &serde_json::to_vec(&arg).unwrap()).await.unwrap();
        for (device_id, name) in [("tl-1", "traffic-light-1"), ("edge-1", "edge-node-1")] {
            let id = tom_fixtures::identity("org1", name);
            let nonce = format!("setup-{device_id}");
            let arg = IdentifyDevice::signed(device_id, id.msp_id, "sensor", id.cert_pem, &nonce, DEFAULT_CHANNEL, |m| id.sign(m)).unwrap();
            ledger.submit(&orchestrator, "IdentifyDevice", &serde_json::to_vec(&arg).unwrap()).await.unwrap();
        }
        let arg = json!({ "contract_id": "bench-contract", "contractor": "edge-1", "uses": [{ "kind": "reading", "source": "tl-1" }], "deadline": "2099-01-01T00:00:00Z" });
        ledger.submit(&orchestrator, "DefineContract", &serde_json::to_vec(&arg).unwrap()).await.unwrap();
    });

    // --- the runs ----------------------------------------------------------------------------
    println!(
        "\n{:<12} {:>4} {:>7} {:>10} {:>9} {:>9} {:>7} {:>8} {:>6} {:>8}",
        "action",
        "conc",
        "actions",
        "actions/s",
        "p50 ms",
        "p99 ms",
        "blocks",
        "tx/block",
        "cores",
        "CPU µs"
    );
    println!("(cores: CPU the whole process kept busy; CPU µs: per action, every thread)");
    let mut best = Vec::new();
    let mut total_transactions = 0usize;
    let mut identify_at_ceiling = None;
    let mut data_ids = Vec::new();
    for concurrency in CONCURRENCY {
        let n = count(concurrency);
        let requests: Vec<Vec<u8>> = identify_requests.drain(..n).collect();
        let r = runtime.block_on(run(
            &ledger,
            &orchestrator,
            "IdentifyDevice",
            requests,
            concurrency,
            Mode::Submit,
        ));
        total_transactions += r.actions;
        best.push(("identify", concurrency, report("identify", concurrency, &r)));
        if concurrency == CEILING_CONCURRENCY {
            identify_at_ceiling = Some(r);
        }
    }
    for concurrency in CONCURRENCY {
        let n = count(concurrency);
        let ids: Vec<String> = (0..n)
            .map(|i| format!("bench-data-{concurrency}-{i}"))
            .collect();
        let requests = ids
            .iter()
            .map(|data_id| {
                let hash = format!(
                    "sha256:{}",
                    hex::encode(ring::digest::digest(
                        &ring::digest::SHA256,
                        data_id.as_bytes()
                    ))
                );
                let light = tom_fixtures::identity("org1", "traffic-light-1");
                let request = RecordData {
                    data_id: data_id.clone(),
                    kind: "reading".into(),
                    hash,
                    size: 1024,
                    location: format!("s3://city/readings/{data_id}"),
                    generated_by: "tl-1".into(),
                    derived_from: vec![],
                    claim: Default::default(),
                }
                .sign(DEFAULT_CHANNEL, "", |m| light.sign(m))
                .unwrap();
                serde_json::to_vec(&request).unwrap()
            })
            .collect();
        let r = runtime.block_on(run(
            &ledger,
            &device,
            "RecordData",
            requests,
            concurrency,
            Mode::Submit,
        ));
        total_transactions += r.actions;
        best.push((
            "record-data",
            concurrency,
            report("record-data", concurrency, &r),
        ));
        data_ids.push(ids);
    }
    for (concurrency, ids) in CONCURRENCY.into_iter().zip(data_ids) {
        let requests = ids
            .iter()
            .map(|data_id| {
                serde_json::to_vec(&json!({ "contract_id": "bench-contract", "data_id": data_id }))
                    .unwrap()
            })
            .collect();
        let r = runtime.block_on(run(
            &ledger,
            &orchestrator,
            "ExecContract",
            requests,
            concurrency,
            Mode::Submit,
        ));
        total_transactions += r.actions;
        best.push(("exec", concurrency, report("exec", concurrency, &r)));
    }

    // --- the contract alone ----------------------------------------------------------------------
    // IdentifyDevice requests like the ones above, for devices not seen yet, evaluated instead
    // of submitted: the contract runs with every check against the committed state, but there
    // is no proposal signature, no block, no store write and no fsync. Adding the one signature
    // back gives the most any ledger could reach with this contract on these cores.
    let requests: Vec<Vec<u8>> = std::mem::take(&mut identify_requests);
    let alone = runtime.block_on(run(
        &ledger,
        &orchestrator,
        "IdentifyDevice",
        requests,
        CEILING_CONCURRENCY,
        Mode::Evaluate,
    ));
    let contract_cpu = alone.cpu / alone.actions as f64;
    let ceiling = cores as f64 / (contract_cpu + 1.0 / gateway_sign);
    let bound = limit(2.0);
    println!(
        "\nIdentifyDevice, contract alone (evaluated, {CEILING_CONCURRENCY} submitters): {:.0}/s on {:.2} cores, {:.0} µs CPU each",
        alone.actions as f64 / alone.wall.as_secs_f64(),
        alone.cpu / alone.wall.as_secs_f64(),
        contract_cpu * 1e6,
    );
    println!(
        "  with the proposal signature, no ledger can pass {ceiling:.0}/s on {cores} cores: {:.0}% of the signature bound",
        100.0 * ceiling / bound
    );
    if let Some(r) = &identify_at_ceiling {
        let reached = r.actions as f64 / r.wall.as_secs_f64();
        println!(
            "  identify submitted ({CEILING_CONCURRENCY} submitters): {reached:.0}/s = {:.0}% of the bound, {:.0}% of that ceiling; the ledger adds {:.0} µs CPU per action",
            100.0 * reached / bound,
            100.0 * reached / ceiling,
            (r.cpu / r.actions as f64 - contract_cpu - 1.0 / gateway_sign) * 1e6,
        );
    }

    let height = ledger.height();
    // How much CPU the single writer used: it is the one serial step, so this is the ceiling
    // no amount of parallel endorsement can lift.
    if let Some(seconds) = thread_cpu_seconds(COMMITTER_THREAD) {
        println!(
            "\ncommitter thread: {seconds:.2}s CPU for {} transactions ({:.0} µs each)",
            total_transactions,
            seconds * 1e6 / total_transactions as f64
        );
    }
    ledger.shutdown();
    let start = Instant::now();
    let verified = tom_gateway::ledger::embedded::verify(dir.path()).unwrap();
    let store_bytes = std::fs::metadata(dir.path().join("ledger.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "\nverify: {} blocks, {} transactions in {:.2}s ({:.0} tx/s); height {height}; store {:.1} MiB",
        verified.blocks,
        verified.transactions,
        start.elapsed().as_secs_f64(),
        verified.transactions as f64 / start.elapsed().as_secs_f64(),
        store_bytes as f64 / (1 << 20) as f64
    );
    let (action, concurrency, top) =
        best.iter()
            .cloned()
            .fold(("", 0, 0.0), |a, b| if b.2 > a.2 { b } else { a });
    let kind = if durable { "durable" } else { "NON-durable" };
    println!("best: {top:.0} {kind} actions/s ({action}, {concurrency} submitters)");
    // Other work on the machine skews every figure above; say how busy it was.
    print_load("end");
}
