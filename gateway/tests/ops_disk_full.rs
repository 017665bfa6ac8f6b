//! A full data directory, for real: the embedded ledger on a 4 MiB tmpfs, filled up with a
//! filler file until writes fail, then the filler deleted.
//!
//! Writes must then answer 503 `ledger_unavailable` saying the storage is full and nothing was
//! recorded (never 500, never redb's "Previous I/O error" forever), `/readyz` must say why,
//! writes must resume by themselves once space returns, no acknowledged write may be lost, and
//! `tom verify` must pass on the store afterwards.
//!
//! Mounting needs root (CI runs `scripts/test.sh` as root); where mounting is impossible the test
//! says so loudly and passes without running.

mod embedded_common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tom_gateway::app::{self, AppState};
use tom_gateway::identities::IdentityStore;
use tom_gateway::ledger::embedded::{self, EmbeddedLedger, EmbeddedOptions};

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with a loud note) where mounting is impossible, e.g. not root.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs (needs root; CI runs as root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fill the file system of `dir` with one file until it refuses more.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xA5u8; 4096];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "filling: {e}");
                break;
            }
        }
    }
    // Whatever the page cache still holds must hit the file system too.
    let _ = file.sync_all();
    path
}

fn install_identities(dir: &Path) -> IdentityStore {
    let mut store = IdentityStore::open(dir).unwrap();
    for (name, fixture) in [("admin", "admin"), ("orchestrator", "orchestrator")] {
        let f = tom_fixtures::identity("org1", fixture);
        store
            .add(name, f.msp_id, f.cert_pem, f.key_pkcs8_pem)
            .unwrap();
        store
            .add_token(name, &format!("test-token-for-{name}"))
            .unwrap();
    }
    IdentityStore::open(dir).unwrap()
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        who: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(who) = who {
            request = request.bearer_auth(format!("test-token-for-{who}"));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            headers,
        )
    }

    async fn drift(&self, n: usize) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        // About a KiB per record, so the store grows by pages with every block.
        let description = format!("drift {n}: {}", "replica count differs; ".repeat(36));
        self.send(
            reqwest::Method::POST,
            "/v1/drifts",
            Some("orchestrator"),
            Some(json!({ "service": format!("svc-{n}"), "description": description })),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_data_dir_answers_503_and_writes_resume_when_space_returns() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let ledger_dir = fs.path().join("ledger");
    let home = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        cache_size: 1 << 20,
        ..EmbeddedOptions::default()
    };
    let ledger = Arc::new(EmbeddedLedger::open(&ledger_dir, options).unwrap());
    let state = AppState::new(ledger.clone(), install_identities(home.path()));
    let running = app::spawn("127.0.0.1:0", state).await.unwrap();
    let client = Client {
        base: running.url(),
        http: reqwest::Client::new(),
    };
    let org = tom_fixtures::org("org1");
    let (status, body, _) = client
        .send(
            reqwest::Method::POST,
            "/v1/orgs",
            Some("admin"),
            Some(json!({ "msp_id": org.msp_id, "ca_certificates": [org.ca_cert_pem] })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, ready, _) = client
        .send(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{ready}");

    let mut acknowledged: Vec<String> = Vec::new();
    for n in 0..20 {
        let (status, body, _) = client.drift(n).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        acknowledged.push(body["tx_id"].as_str().unwrap().to_owned());
    }

    // Fill the disk; then write until the ledger runs out of room.
    let filler = fill(fs.path());
    let mut refused = None;
    for n in 100..500 {
        let (status, body, headers) = client.drift(n).await;
        match status {
            StatusCode::CREATED => acknowledged.push(body["tx_id"].as_str().unwrap().to_owned()),
            _ => {
                refused = Some((status, body, headers));
                break;
            }
        }
    }
    let (status, body, headers) = refused.expect("a write failed once the disk was full");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("ledger storage full")
            && message.contains("no space left on device")
            && message.contains("nothing was recorded"),
        "{message}"
    );
    assert!(
        !message.contains(fs.path().to_str().unwrap()),
        "no paths: {message}"
    );
    assert_eq!(body["code"], "ledger_unavailable", "{body}");
    assert_eq!(body["retryable"], true, "{body}");
    assert!(headers.contains_key("retry-after"));
    eprintln!(
        "{} writes acknowledged before the disk was full",
        acknowledged.len()
    );

    // Still full: writes keep answering, 503 with the reason (never 500, never "previous I/O
    // error"), or 201 when the pages a failed block had taken, freed when the store was reopened,
    // hold the next one.
    let mut refusals = 0;
    for n in 1000..1200 {
        let (status, body, _) = client.drift(n).await;
        if status == StatusCode::CREATED {
            acknowledged.push(body["tx_id"].as_str().unwrap().to_owned());
            continue;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("ledger storage"),
            "{body}"
        );
        refusals += 1;
        if refusals == 3 {
            break;
        }
    }
    assert_eq!(
        refusals, 3,
        "writes kept failing while the disk stayed full"
    );
    let (status, ready, _) = client
        .send(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["status"], "not ready");
    assert!(
        ready["ledger"]["detail"]
            .as_str()
            .unwrap()
            .contains("storage full"),
        "{ready}"
    );
    // Liveness is not readiness, and names no paths.
    let (status, health, _) = client
        .send(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!health.to_string().contains('/'), "{health}");

    // Free the space: writes resume by themselves (no restart).
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 2000;
    loop {
        let (status, body, _) = client.drift(n).await;
        n += 1;
        if status == StatusCode::CREATED {
            acknowledged.push(body["tx_id"].as_str().unwrap().to_owned());
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            Instant::now() < deadline,
            "writes did not resume within 30 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in 3000..3005 {
        let (status, body, _) = client.drift(n).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        acknowledged.push(body["tx_id"].as_str().unwrap().to_owned());
    }
    let (status, ready, _) = client
        .send(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{ready}");

    // Every acknowledged write is there.
    for tx_id in &acknowledged {
        let (status, body, _) = client
            .send(
                reqwest::Method::GET,
                &format!("/v1/transactions/{tx_id}"),
                Some("orchestrator"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{tx_id}: {body}");
    }
    running.stop().await.unwrap();
    ledger.shutdown();
    drop(ledger);

    // And the store verifies end to end.
    let report = embedded::verify(&ledger_dir).expect("tom verify passes after the full disk");
    assert!(
        report.transactions as usize > acknowledged.len(),
        "{report}"
    );
}

/// Stopped while the disk is still full: the store is left consistent (or, if redb could not
/// finish, `tom verify` names the problem), and the next start on free space carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_on_a_full_disk_leaves_a_store_that_verifies() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let ledger_dir = fs.path().join("ledger");
    let home = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        cache_size: 1 << 20,
        ..EmbeddedOptions::default()
    };
    let ledger = Arc::new(EmbeddedLedger::open(&ledger_dir, options.clone()).unwrap());
    let state = AppState::new(ledger.clone(), install_identities(home.path()));
    let running = app::spawn("127.0.0.1:0", state).await.unwrap();
    let client = Client {
        base: running.url(),
        http: reqwest::Client::new(),
    };
    let org = tom_fixtures::org("org1");
    let (status, body, _) = client
        .send(
            reqwest::Method::POST,
            "/v1/orgs",
            Some("admin"),
            Some(json!({ "msp_id": org.msp_id, "ca_certificates": [org.ca_cert_pem] })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let filler = fill(fs.path());
    let mut failed = false;
    for n in 0..400 {
        let (status, body, _) = client.drift(n).await;
        if status != StatusCode::CREATED {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            failed = true;
            break;
        }
    }
    assert!(failed, "a write failed once the disk was full");
    running.stop().await.unwrap();
    ledger.shutdown();
    drop(ledger);
    match embedded::verify(&ledger_dir) {
        Ok(report) => eprintln!("verified while still full: {report}"),
        Err(e) => {
            let message = e.to_string();
            // The store was not closed cleanly, or its last blocks are only in the journal:
            // either way verify names the file and says what to do.
            assert!(
                (message.contains("needs repair") && message.contains("ledger.redb"))
                    || (message.contains("blocks.journal")
                        && message.contains("start `tom serve`")),
                "verify must name the problem: {message}"
            );
        }
    }
    // Space returns; the next start repairs if needed and the log verifies.
    std::fs::remove_file(&filler).unwrap();
    let ledger = EmbeddedLedger::open(&ledger_dir, options).unwrap();
    ledger.shutdown();
    drop(ledger);
    embedded::verify(&ledger_dir).expect("verifies after a restart with space");
}

/// `tom compact` on a full disk: it fails naming what it was doing, changes nothing (every
/// answer the same, the log verifies), and once space returns it runs to the end and leaves no
/// partial copy behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_on_a_full_disk_changes_nothing() {
    use embedded_common::*;
    let Some(fs) = Tmpfs::mount("16m") else {
        return;
    };
    let dir = fs.path().join("ledger");
    {
        let ledger = EmbeddedLedger::open(&dir, EmbeddedOptions::default()).unwrap();
        device_with_readings(&ledger, 300).await;
        ledger.shutdown();
    }
    let answers = |dir: PathBuf| async move {
        let ledger = EmbeddedLedger::open(&dir, EmbeddedOptions::default()).unwrap();
        let out = (
            query(&ledger, "GetHistory", json!({ "id": "tl-1" })).await,
            query(&ledger, "GetEntity", json!({ "id": "reading-299" })).await,
            query(&ledger, "ListDevices", json!({})).await,
        );
        ledger.shutdown();
        out
    };
    let before = answers(dir.clone()).await;

    let filler = fill(fs.path());
    let err = embedded::compact(&dir).unwrap_err().to_string();
    assert!(err.contains("repacking world_state_packed"), "{err}");
    assert!(err.contains("nothing changed"), "{err}");
    eprintln!("compaction on a full disk: {err}");
    std::fs::remove_file(&filler).unwrap();

    assert_eq!(answers(dir.clone()).await, before);
    embedded::verify(&dir).unwrap();
    let report = embedded::compact(&dir).unwrap();
    assert!(
        report.tables[0].bytes_after < report.tables[0].bytes_before,
        "{report}"
    );
    assert_eq!(answers(dir.clone()).await, before);
    embedded::verify(&dir).unwrap();
    let db = redb::Database::open(dir.join(embedded::store::STORE_FILE)).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let names: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|t| redb::TableHandle::name(&t).to_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.ends_with("_repacking")),
        "{names:?}"
    );
}
