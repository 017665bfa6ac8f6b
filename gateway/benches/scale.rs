//! The embedded ledger at scale (issue 13): grow one ledger in a temporary directory to
//! `TOM_SCALE_RECORDS` records (default 20,000) with an edge site's mix, in process, and print
//! the figures that matter at a million records, as ratios measured in the same run:
//!
//! * disk bytes per record (allocated blocks of the data directory / records) as ingest leaves
//!   them and after `tom compact`, and where they
//!   go, table by table;
//! * ingest rate per 10% slice, and the last slice as a ratio to the first (flat = 1.0), with
//!   the process's CPU time per record in each slice: on a shared machine the rate moves by
//!   ±15% between runs of the same build, while CPU per record says whether the work per
//!   record grows with the ledger; beside it the committer thread's share of that CPU (the one
//!   serial stage), transactions per block, and the bytes written per record (journal appends
//!   and store page writes), which show what grows;
//! * lineage up at depth 5 and 20 from random data, p50/p99;
//! * records by agent, first page and a deep page (bookmark), p50/p99;
//! * `tom verify`: time, transactions/s (and per core) and peak RSS, measured in a child
//!   process (this binary re-run with `TOM_SCALE_VERIFY_CHILD`), so the growth phase's memory
//!   does not count;
//! * this machine's signature bound (ECDSA P-256 sign and verify per second on one core, in the
//!   same run) and durable IdentifyDevice/s at 64 submitters as a ratio to it.
//!
//! The mix follows the issue's 1M-record run: ~300 devices and ~200 containers (fewer for
//! small runs), each container placed on a device and the contractor of one contract, then
//! 53% RecordData in derivation chains 10 to 60 deep (one in ten with a second parent) and 47%
//! ExecContract, each on an earlier data item not executed yet, under a random contract. 64 submitters; each owns its chains and submits in order, so a
//! data item's inputs are committed before it is.
//!
//! Run: `cargo bench -p tom-gateway --bench scale` (`TOM_SCALE_RECORDS=100000`,
//! `TOM_BENCH_DIR` to put the store on another disk, `TOM_SCALE_KEEP=1` to keep the ledger
//! directory afterwards). To take a slow-down apart: `TOM_SCALE_CACHE_MIB` (redb's page cache,
//! default 256), `TOM_SCALE_STORE_SYNC_MS` (how often the store is synced, default 5000; 0 is
//! a durable store commit per block, without the block journal), `TOM_SCALE_NON_DURABLE=1`
//! (no fsync at all; not a figure that counts).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tom_contract::requests::{IdentifyDevice, RecordData};
use tom_contract::simulation::DEFAULT_CHANNEL;
use tom_contract::Timestamp;
use tom_gateway::ledger::embedded::{EmbeddedLedger, EmbeddedOptions};
use tom_gateway::ledger::{Ledger, SigningIdentity};

const SUBMITTERS: usize = 64;
const SAMPLES: usize = 200;

fn signer(org: &str, name: &str) -> SigningIdentity {
    let id = tom_fixtures::identity(org, name);
    SigningIdentity::from_pem(id.msp_id, id.cert_pem, id.key_pkcs8_pem).unwrap()
}

/// A small deterministic generator (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// CPU time (user + system) in a `/proc` `stat` file (Linux clock ticks of 1/100 s); zero if
/// it cannot be read.
fn stat_cpu(path: &Path) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// CPU time this process has used (user + system).
fn process_cpu() -> Duration {
    stat_cpu(Path::new("/proc/self/stat"))
}

/// CPU time of this process's thread named `name` (user + system); zero if there is none.
fn thread_cpu(name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .flatten()
        .find(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .map(|task| stat_cpu(&task.path().join("stat")))
        .unwrap_or(Duration::ZERO)
}

/// Bytes this process has handed to `write`-family calls (`wchar` of `/proc/self/io`): the
/// block journal's appends and the store's page writes.
fn bytes_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The committer's thread name as the kernel keeps it (15 bytes of `tom-ledger-commit`).
const COMMITTER_THREAD: &str = "tom-ledger-comm";

/// Operations per second of `op` on one thread, over about `budget`.
fn rate(budget: Duration, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..20 {
            op();
        }
        n += 20;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// Bytes the files under `dir` occupy on disk (allocated blocks, as `du` counts them).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            disk_bytes(&entry.path())
        } else {
            meta.blocks() * 512
        };
    }
    total
}

struct Device {
    id: String,
    identity: SigningIdentity,
}

/// One submission: who, what, and the request body.
struct Action {
    who: usize, // index into `devices`, or usize::MAX for the orchestrator
    function: &'static str,
    body: Vec<u8>,
}

/// A submitter's own chains and data, so its inputs are always committed before they are used.
struct Worker {
    rng: Rng,
    chain_last: Option<String>,
    chain_left: usize,
    chain_device: usize,
    data: Vec<String>,
    /// Each data item joins one execution (the contract allows a (data, contract) pair once).
    executed: usize,
    made: usize,
}

fn data_request(device: &Device, data_id: &str, inputs: Vec<String>) -> Vec<u8> {
    let hash = format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            data_id.as_bytes()
        ))
    );
    let request = RecordData {
        data_id: data_id.to_owned(),
        kind: "reading".into(),
        hash,
        size: 4096,
        location: format!("s3://site/readings/{data_id}"),
        generated_by: device.id.clone(),
        derived_from: inputs,
        claim: Default::default(),
    }
    .sign(DEFAULT_CHANNEL, "", |m| device.identity.sign(m))
    .unwrap();
    serde_json::to_vec(&request).unwrap()
}

impl Worker {
    fn actions(&mut self, w: usize, n: usize, devices: &[Device], contracts: usize) -> Vec<Action> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            // 53% data, 47% executions (the issue's mix); executions need data first.
            if self.executed == self.data.len() || self.rng.below(100) < 53 {
                if self.chain_left == 0 {
                    self.chain_last = None;
                    self.chain_left = 10 + self.rng.below(51);
                    self.chain_device = self.rng.below(devices.len());
                }
                self.chain_left -= 1;
                let id = format!("d{w}-{}", self.made);
                self.made += 1;
                let mut inputs: Vec<String> = self.chain_last.iter().cloned().collect();
                if !inputs.is_empty() && self.rng.below(10) == 0 {
                    let other = self.data[self.rng.below(self.data.len())].clone();
                    if !inputs.contains(&other) {
                        inputs.push(other);
                    }
                }
                let device = self.chain_device;
                out.push(Action {
                    who: device,
                    function: "RecordData",
                    body: data_request(&devices[device], &id, inputs),
                });
                self.chain_last = Some(id.clone());
                self.data.push(id);
            } else {
                let data = &self.data[self.executed];
                self.executed += 1;
                let contract = self.rng.below(contracts);
                out.push(Action {
                    who: usize::MAX,
                    function: "ExecContract",
                    body: serde_json::to_vec(
                        &json!({ "contract_id": format!("c-{contract}"), "data_id": data }),
                    )
                    .unwrap(),
                });
            }
        }
        out
    }
}

/// Submit each worker's actions in order, the workers concurrently; returns the latencies.
async fn submit_all(
    ledger: &Arc<EmbeddedLedger>,
    devices: &Arc<Vec<Device>>,
    orchestrator: &SigningIdentity,
    per_worker: Vec<Vec<Action>>,
) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for actions in per_worker {
        let (ledger, devices, orchestrator) =
            (ledger.clone(), devices.clone(), orchestrator.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(actions.len());
            for a in actions {
                let who = match a.who {
                    usize::MAX => &orchestrator,
                    i => &devices[i].identity,
                };
                let t = Instant::now();
                if let Err(e) = ledger.submit(who, a.function, &a.body).await {
                    panic!("{} failed: {e}", a.function);
                }
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

/// Submit independent requests from `SUBMITTERS` tasks.
async fn submit_parallel(
    ledger: &Arc<EmbeddedLedger>,
    who: &SigningIdentity,
    function: &'static str,
    bodies: Vec<Vec<u8>>,
) -> Vec<Duration> {
    let mut per_worker: Vec<Vec<Vec<u8>>> = (0..SUBMITTERS).map(|_| Vec::new()).collect();
    for (i, b) in bodies.into_iter().enumerate() {
        per_worker[i % SUBMITTERS].push(b);
    }
    let mut tasks = Vec::new();
    for bodies in per_worker {
        let (ledger, who) = (ledger.clone(), who.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for body in bodies {
                let t = Instant::now();
                if let Err(e) = ledger.submit(&who, function, &body).await {
                    panic!("{function} failed: {e}");
                }
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

/// Latencies of `SAMPLES` evaluations of `function` with the bodies `make` returns.
async fn sample(
    ledger: &EmbeddedLedger,
    who: &SigningIdentity,
    function: &str,
    mut make: impl FnMut(usize) -> serde_json::Value,
) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::with_capacity(SAMPLES);
    let mut max_bytes = 0;
    for i in 0..SAMPLES {
        let body = serde_json::to_vec(&make(i)).unwrap();
        let t = Instant::now();
        let answer = ledger
            .evaluate(who, function, &body)
            .await
            .unwrap_or_else(|e| panic!("{function} failed: {e}"));
        latencies.push(t.elapsed());
        max_bytes = max_bytes.max(answer.len());
    }
    latencies.sort();
    (latencies, max_bytes)
}

fn issue_devices(
    org: &tom_fixtures::Org,
    prefix: &str,
    n: usize,
) -> Vec<(Device, tom_fixtures::pki::IssuedIdentity)> {
    let ca = org.ca();
    (0..n)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            let issued = tom_fixtures::pki::issue_identity(
                &ca,
                &id,
                Some("client"),
                Some("device"),
                (2024, 1, 1),
                (2099, 12, 31),
            )
            .unwrap();
            let identity =
                SigningIdentity::from_pem(org.msp_id, &issued.cert_pem, &issued.key_pkcs8_pem)
                    .unwrap();
            (Device { id, identity }, issued)
        })
        .collect()
}

fn identify_request(
    org: &tom_fixtures::Org,
    device: &Device,
    issued: &tom_fixtures::pki::IssuedIdentity,
) -> Vec<u8> {
    let request = IdentifyDevice::signed(
        &device.id,
        org.msp_id,
        "sensor",
        &issued.cert_pem,
        &format!("nonce-{}", device.id),
        DEFAULT_CHANNEL,
        |m| device.identity.sign(m),
    )
    .unwrap();
    serde_json::to_vec(&request).unwrap()
}

/// Child mode: verify `dir` and print the transaction count, seconds and peak RSS.
fn verify_child(dir: &str) {
    let start = Instant::now();
    let report = tom_gateway::ledger::embedded::verify(Path::new(dir)).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    println!("VERIFY {} {seconds} {hwm_kib}", report.transactions);
}

fn main() {
    if let Ok(dir) = std::env::var("TOM_SCALE_VERIFY_CHILD") {
        verify_child(&dir);
        return;
    }
    let records: usize = std::env::var("TOM_SCALE_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let started = Instant::now();

    // --- the signature bound, measured first on an idle process --------------------------------
    let orchestrator = signer("org1", "orchestrator");
    let message =
        b"tom/v1 scale benchmark: a proposal is about this long, give or take a certificate";
    let sign = rate(Duration::from_secs(1), || {
        std::hint::black_box(orchestrator.sign(message));
    });
    let signature = orchestrator.sign(message);
    let cert = tom_contract::identity::Certificate::from_pem(
        tom_fixtures::identity("org1", "orchestrator").cert_pem,
    )
    .unwrap();
    let verify_rate = rate(Duration::from_secs(1), || {
        assert!(cert.verify(message, &signature));
    });
    // The issue's bound for IdentifyDevice: one creator signature and two verifications.
    let identify_bound = cores as f64 / (1.0 / sign + 2.0 / verify_rate);

    // --- set-up: organisation, devices, containers placed on them, one contract each ------------
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    let base = std::env::var_os("TOM_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mut dir = tempfile::tempdir_in(base).unwrap();
    // TOM_SCALE_KEEP=1 leaves the grown ledger behind for inspection (`tom verify`, `tom audit`).
    dir.disable_cleanup(std::env::var_os("TOM_SCALE_KEEP").is_some());
    // TOM_SCALE_CACHE_MIB=n sizes redb's page cache (default 256 MiB), to see how much of the
    // slow-down as the ledger grows is the store outgrowing its cache.
    let mut options = EmbeddedOptions::default();
    if let Some(mib) = std::env::var("TOM_SCALE_CACHE_MIB")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        options.cache_size = mib << 20;
    }
    let cache_mib = options.cache_size >> 20;
    // TOM_SCALE_STORE_SYNC_MS=n: how often the store commit is durable (default 5000 ms; 0 is
    // a durable store commit per block, without the block journal).
    if let Some(ms) = std::env::var("TOM_SCALE_STORE_SYNC_MS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        options.store_sync_interval = Duration::from_millis(ms);
    }
    let store_sync_ms = options.store_sync_interval.as_millis();
    // TOM_SCALE_NON_DURABLE=1 skips the fsync of every block: what durability costs as the
    // ledger grows. The figures that count are durable.
    options.durable = std::env::var_os("TOM_SCALE_NON_DURABLE").is_none();
    let durability = if options.durable {
        ""
    } else {
        ", NOT DURABLE (no fsync)"
    };
    let ledger = Arc::new(EmbeddedLedger::open(dir.path(), options).unwrap());
    let org = tom_fixtures::org("org1");
    let n_devices = (records * 3 / 10_000).clamp(20, 300);
    let n_containers = (records * 2 / 10_000).clamp(10, 200);
    // Long enough at a million records (a few seconds) that the figure is not one burst
    // between two store syncs.
    let n_identify = (records / 20).clamp(500, 10_000);
    let issued = issue_devices(org, "dev", n_devices);
    let fresh = issue_devices(org, "late", n_identify);
    let mut setup_records = 0usize;
    runtime.block_on(async {
        let arg = json!({ "msp_id": org.msp_id, "name": "org1", "ca_certificates": [org.ca_cert_pem] });
        ledger.submit(&signer("org1", "admin"), "RegisterOrg", &serde_json::to_vec(&arg).unwrap()).await.unwrap();
        let bodies = issued.iter().map(|(d, i)| identify_request(org, d, i)).collect();
        submit_parallel(&ledger, &orchestrator, "IdentifyDevice", bodies).await;
        let digest = format!("sha256:{}", "ab".repeat(32));
        let bodies = (0..n_containers)
            .map(|c| serde_json::to_vec(&json!({ "container_id": format!("ct-{c}"), "org": org.msp_id, "image": "registry.local/site/analyser:1.4", "digest": digest })).unwrap())
            .collect();
        submit_parallel(&ledger, &orchestrator, "IdentifyContainer", bodies).await;
        let bodies = (0..n_containers)
            .map(|c| serde_json::to_vec(&json!({ "container_id": format!("ct-{c}"), "device_id": format!("dev-{}", c % n_devices) })).unwrap())
            .collect();
        submit_parallel(&ledger, &orchestrator, "PlaceContainer", bodies).await;
        let bodies = (0..n_containers)
            .map(|c| serde_json::to_vec(&json!({ "contract_id": format!("c-{c}"), "contractor": format!("ct-{c}"), "uses": [{ "kind": "reading" }], "deadline": "2099-01-01T00:00:00Z" })).unwrap())
            .collect();
        submit_parallel(&ledger, &orchestrator, "DefineContract", bodies).await;
    });
    setup_records += 1 + n_devices + 3 * n_containers;
    let devices: Arc<Vec<Device>> = Arc::new(issued.into_iter().map(|(d, _)| d).collect());
    println!(
        "set-up: {n_devices} devices, {n_containers} containers and contracts ({setup_records} records) in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // --- growth, in ten slices --------------------------------------------------------------------
    let growth = records.saturating_sub(setup_records).max(SUBMITTERS * 10);
    let mut workers: Vec<Worker> = (0..SUBMITTERS)
        .map(|w| Worker {
            rng: Rng(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1)),
            chain_last: None,
            chain_left: 0,
            chain_device: 0,
            data: Vec::new(),
            executed: 0,
            made: 0,
        })
        .collect();
    let mut slices = Vec::new();
    let mut middle = now();
    println!(
        "\n{:>6} {:>9} {:>10} {:>8} {:>8} {:>14} {:>10} {:>9} {:>10}",
        "slice",
        "records",
        "records/s",
        "p50 ms",
        "p99 ms",
        "CPU µs/record",
        "commit µs",
        "tx/block",
        "KiB written"
    );
    println!("(commit µs: the committer thread's CPU per record; KiB written: journal and store writes per record)");
    for slice in 0..10 {
        let n = growth / 10 + usize::from(slice < growth % 10);
        let per_worker: Vec<Vec<Action>> = workers
            .iter_mut()
            .enumerate()
            .map(|(w, worker)| {
                let share = n / SUBMITTERS + usize::from(w < n % SUBMITTERS);
                worker.actions(w, share, &devices, n_containers)
            })
            .collect();
        if slice == 5 {
            middle = now();
        }
        let t = Instant::now();
        let cpu = process_cpu();
        let commit_cpu = thread_cpu(COMMITTER_THREAD);
        let written = bytes_written();
        let height = ledger.height();
        let latencies = runtime.block_on(submit_all(&ledger, &devices, &orchestrator, per_worker));
        let wall = t.elapsed();
        let cpu_per_record = (process_cpu() - cpu).as_secs_f64() * 1e6 / n as f64;
        let commit_per_record =
            (thread_cpu(COMMITTER_THREAD) - commit_cpu).as_secs_f64() * 1e6 / n as f64;
        let per_block = n as f64 / (ledger.height() - height).max(1) as f64;
        let kib_per_record = (bytes_written() - written) as f64 / 1024.0 / n as f64;
        let per_second = n as f64 / wall.as_secs_f64();
        println!(
            "{:>6} {:>9} {per_second:>10.0} {:>8.1} {:>8.1} {cpu_per_record:>14.0} {commit_per_record:>10.0} {per_block:>9.1} {kib_per_record:>10.1}",
            slice + 1,
            setup_records + growth * (slice + 1) / 10,
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99))
        );
        slices.push((per_second, percentile(&latencies, 0.5), cpu_per_record));
    }
    let total_records = setup_records + growth;

    // --- queries ----------------------------------------------------------------------------------
    let auditor = signer("org1", "auditor");
    let all_data: Vec<String> = workers
        .iter()
        .flat_map(|w| w.data.iter().cloned())
        .collect();
    let mut rng = Rng(42);
    let mut lineage = Vec::new();
    for depth in [5u32, 20] {
        let picks: Vec<String> = (0..SAMPLES)
            .map(|_| all_data[rng.below(all_data.len())].clone())
            .collect();
        let (l, bytes) = runtime.block_on(sample(
            &ledger,
            &auditor,
            "GetLineage",
            |i| json!({ "id": picks[i], "direction": "up", "depth": depth }),
        ));
        lineage.push((depth, l, bytes));
    }
    let orchestrator_agent = format!("{}/orchestrator", org.msp_id);
    let agent_of = |i: usize, rng: &mut Rng| {
        // Half the queries ask for the busiest agent (every execution), half for a device.
        if i.is_multiple_of(2) {
            orchestrator_agent.clone()
        } else {
            format!("{}/dev-{}", org.msp_id, rng.below(n_devices))
        }
    };
    let agents: Vec<String> = (0..SAMPLES).map(|i| agent_of(i, &mut rng)).collect();
    let (first_page, first_bytes) = runtime.block_on(sample(
        &ledger,
        &auditor,
        "QueryRecords",
        |i| json!({ "agent": agents[i], "page_size": 100 }),
    ));
    let far = Timestamp::from_seconds(253_402_300_799);
    let (deep_page, _) = runtime.block_on(sample(&ledger, &auditor, "QueryRecords", |i| {
        // A bookmark in the middle of the agent's records, as a client paging through gets.
        let (start, _) = tom_contract::keys::time_range(tom_contract::keys::BY_AGENT, &[&agents[i]], middle, far).unwrap();
        json!({ "agent": agents[i], "page_size": 100, "bookmark": tom_contract::keys::encode_bookmark(&start) })
    }));

    // --- durable IdentifyDevice/s at 64 submitters, against the signature bound -------------------
    let bodies: Vec<Vec<u8>> = fresh
        .iter()
        .map(|(d, i)| identify_request(org, d, i))
        .collect();
    let t = Instant::now();
    let identify_latencies = runtime.block_on(submit_parallel(
        &ledger,
        &orchestrator,
        "IdentifyDevice",
        bodies,
    ));
    let identify_rate = n_identify as f64 / t.elapsed().as_secs_f64();
    let total_records = total_records + n_identify;
    ledger.shutdown();
    drop(ledger);

    // --- disk ---------------------------------------------------------------------------------------
    let disk = disk_bytes(dir.path());
    let store = dir
        .path()
        .join(tom_gateway::ledger::embedded::store::STORE_FILE);
    let space = tom_gateway::ledger::embedded::store::space_report(&store).unwrap();

    // --- tom verify in a child process ----------------------------------------------------------------
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .env("TOM_SCALE_VERIFY_CHILD", dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("VERIFY "))
        .unwrap_or_else(|| {
            panic!(
                "verify child failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let fields: Vec<f64> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    let (verify_tx, verify_s, verify_kib) = (fields[0], fields[1], fields[2]);

    // --- tom compact (after verification, which reads the store as ingest left it) --------------------
    let t = Instant::now();
    let compacted = tom_gateway::ledger::embedded::compact(dir.path()).unwrap();
    let compact_s = t.elapsed().as_secs_f64();
    let disk_compacted = disk_bytes(dir.path());

    // --- the table -------------------------------------------------------------------------------------
    println!(
        "\nwhere the bytes go ({} in the data directory, store file {:.1} MiB):",
        human(disk),
        std::fs::metadata(&store).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0
    );
    println!(
        "{:<24} {:>10} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "table", "entries", "stored", "metadata", "fragmented", "total", "B/record"
    );
    let mut tables_total = 0;
    for t in &space {
        tables_total += t.total();
        println!(
            "{:<24} {:>10} {:>12} {:>12} {:>12} {:>12} {:>10.0}",
            t.name,
            t.entries,
            t.stored_bytes,
            t.metadata_bytes,
            t.fragmented_bytes,
            t.total(),
            t.total() as f64 / total_records as f64
        );
    }
    println!(
        "{:<24} {:>10} {:>12} {:>12} {:>12} {:>12} {:>10.0}",
        "(tables)",
        "",
        "",
        "",
        "",
        tables_total,
        tables_total as f64 / total_records as f64
    );

    let content = tom_gateway::ledger::embedded::store::content_report(&store).unwrap();
    let canonical: u64 = content.block_parts.iter().map(|(_, b)| b).sum();
    println!(
        "\nthe block log: {:.0} B/record canonical, {:.0} B/record stored",
        canonical as f64 / total_records as f64,
        content.blocks_stored as f64 / total_records as f64
    );
    for (part, bytes) in &content.block_parts {
        println!(
            "  {part:<40} {:>8.0} B/record",
            *bytes as f64 / total_records as f64
        );
    }
    println!(
        "after `tom compact` ({compact_s:.1} s, {}):\n{compacted}",
        human(disk_compacted)
    );
    println!("the world state by object type (keys and values as inserted, per record):");
    for (object_type, keys, key_bytes, value_bytes) in &content.state_types {
        println!(
            "  {object_type:<28} {:>6.2} keys {:>8.0} B keys {:>8.0} B values",
            *keys as f64 / total_records as f64,
            *key_bytes as f64 / total_records as f64,
            *value_bytes as f64 / total_records as f64
        );
    }

    let first = slices.first().unwrap().0;
    let last = slices.last().unwrap().0;
    println!(
        "\n## {total_records} records, {cores} cores, {cache_mib} MiB page cache, store synced every {store_sync_ms} ms{durability} ({:.0}s in all)\n",
        started.elapsed().as_secs_f64()
    );
    println!("| what | measured | goal |\n|---|---|---|");
    println!(
        "| disk per record | {} for {total_records}: **{:.0} B per record** as ingest leaves it; after `tom compact` ({compact_s:.1} s) {}: **{:.0} B per record** | ≤ 2 KB |",
        human(disk),
        disk as f64 / total_records as f64,
        human(disk_compacted),
        disk_compacted as f64 / total_records as f64
    );
    println!(
        "| ingest as the ledger grows | first 10% {first:.0}/s (p50 {:.1} ms, {:.0} µs CPU/record), last 10% {last:.0}/s (p50 {:.1} ms, {:.0} µs CPU/record): **last/first {:.2}**, CPU per record first/last {:.2} | ≥ 0.90 |",
        ms(slices[0].1),
        slices[0].2,
        ms(slices[9].1),
        slices[9].2,
        last / first,
        slices[0].2 / slices[9].2
    );
    for (depth, l, bytes) in &lineage {
        println!(
            "| lineage up, depth {depth}, random data | p50 {:.2} ms, **p99 {:.2} ms** (largest answer {} B) | p99 < {} ms |",
            ms(percentile(l, 0.5)),
            ms(percentile(l, 0.99)),
            bytes,
            if *depth == 5 { 5 } else { 10 }
        );
    }
    println!(
        "| records by agent, first page of 100 | p50 {:.2} ms, **p99 {:.2} ms**, max {:.1} ms (largest {} B) | p99 < 20 ms |",
        ms(percentile(&first_page, 0.5)),
        ms(percentile(&first_page, 0.99)),
        ms(*first_page.last().unwrap()),
        first_bytes
    );
    println!(
        "| records by agent, deep page (bookmark mid-ledger) | p50 {:.2} ms, **p99 {:.2} ms** | p99 < 20 ms |",
        ms(percentile(&deep_page, 0.5)),
        ms(percentile(&deep_page, 0.99))
    );
    println!(
        "| `tom verify` over {verify_tx:.0} transactions | {verify_s:.1} s, {:.0} tx/s ({:.0} tx/s per core), **peak RSS {:.0} MiB** | every core, < 256 MiB |",
        verify_tx / verify_s,
        verify_tx / verify_s / cores as f64,
        verify_kib / 1024.0
    );
    println!(
        "| durable IdentifyDevice/s, 64 submitters, in process | {identify_rate:.0}/s (p99 {:.1} ms) = **{:.0}% of the signature bound** {identify_bound:.0}/s (sign {sign:.0}/s, verify {verify_rate:.0}/s per core, {cores} cores; 1 sign + 2 verifies each) | ≥ 70%, p99 < 20 ms |",
        ms(percentile(&identify_latencies, 0.99)),
        100.0 * identify_rate / identify_bound
    );
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}
