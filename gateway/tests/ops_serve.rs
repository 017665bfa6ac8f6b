//! `tom serve` as an operator runs it, under two bad days: its log on a full disk, and many
//! slow or idle clients with a low open-file limit.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOM: &str = env!("CARGO_BIN_EXE_tom");

struct Served {
    child: Child,
    addr: SocketAddr,
}

impl Served {
    /// Run `sh -c 'SETUP; exec tom serve ARGS'` on a free port and wait for its address.
    fn start(setup: &str, args: &[&str], data_dir: &Path, stderr: Stdio, rust_log: &str) -> Served {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("{setup} exec \"$0\" \"$@\""))
            .arg(TOM)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("tom serve exited before listening")
                .unwrap();
            if let Some(rest) = line.strip_prefix("TOM gateway listening on http://") {
                break rest.split(' ').next().unwrap().parse().unwrap();
            }
        };
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Served { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The server process's soft and hard open-file limits.
    fn nofile(&self) -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.child.id())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields[3].parse().unwrap(), fields[4].parse().unwrap())
    }

    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "tom serve exits cleanly on SIGTERM: {status}"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tom serve did not stop within 20 s of SIGTERM");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn orchestrator_token(data_dir: &Path) -> String {
    let text = std::fs::read_to_string(data_dir.join("dev-credentials.json")).unwrap();
    let credentials: Value = serde_json::from_str(&text).unwrap();
    credentials["tokens"]["orchestrator"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// stderr on a full disk (`/dev/full` answers every write with ENOSPC) and every log level on:
/// the gateway starts, answers requests that log (including errors), commits writes, and its
/// committer stays alive. It used to panic in `eprintln!` inside tracing-subscriber.
#[tokio::test]
async fn a_full_log_disk_never_takes_the_service_down() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full exists on Linux");
    let served = Served::start("", &[], dir.path(), Stdio::from(full), "trace");
    let token = orchestrator_token(dir.path());
    let http = reqwest::Client::new();
    for n in 0..20 {
        let drift = http
            .post(served.url("/v1/drifts"))
            .bearer_auth(&token)
            .json(&json!({ "service": format!("svc-{n}"), "description": "replicas differ" }))
            .send()
            .await
            .expect("a write answers although its log lines cannot be written");
        assert_eq!(drift.status(), 201);
        let committed: Value = drift.json().await.unwrap();
        let tx_id = committed["tx_id"].as_str().unwrap();
        let read = http
            .get(served.url(&format!("/v1/transactions/{tx_id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200);
        // Requests that log at warn/error level: refused, unauthenticated, unknown.
        let refused = http
            .post(served.url("/v1/drifts"))
            .bearer_auth(&token)
            .json(&json!({ "service": "" }))
            .send()
            .await
            .expect("a refused request answers");
        assert!(refused.status().is_client_error());
        let anonymous = http.get(served.url("/v1/records")).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
    }
    let ready = http.get(served.url("/readyz")).send().await.unwrap();
    assert_eq!(
        ready.status(),
        200,
        "the committer is alive: {}",
        ready.text().await.unwrap()
    );
    served.stop();
}

/// 300 idle and 50 header-trickling connections against a gateway started with a soft
/// open-file limit of 256 and a cap of 200 connections: it raises the soft limit to the hard
/// one, `/healthz` answers quickly throughout, and every slow or idle connection is closed once
/// its timeout has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_shed_and_healthz_answers() {
    // The test itself holds ~400 sockets.
    let _ = tom_gateway::app::raise_nofile_limit();
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(
        "ulimit -S -n 256 &&",
        &[
            "--in-memory",
            "--header-read-timeout-secs",
            "2",
            "--idle-timeout-secs",
            "3",
            "--max-connections",
            "200",
        ],
        dir.path(),
        Stdio::null(),
        "warn",
    );
    let (soft, hard) = served.nofile();
    assert_eq!(
        soft, hard,
        "the soft open-file limit is raised to the hard one"
    );
    let started = Instant::now();

    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(served.addr).await.unwrap());
    }
    let mut tricklers = Vec::new();
    for n in 0..50 {
        let addr = served.addr;
        tricklers.push(tokio::spawn(async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let opened = Instant::now();
            if tcp
                .write_all(format!("GET /healthz HTTP/1.1\r\nhost: t{n}\r\nx-slow: ").as_bytes())
                .await
                .is_err()
            {
                return opened.elapsed();
            }
            // One byte every 200 ms, never finishing the headers; give up after 20 s.
            let mut buf = [0u8; 512];
            while opened.elapsed() < Duration::from_secs(20) {
                tokio::select! {
                    read = tcp.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return opened.elapsed(),
                        Ok(_) => {}
                    },
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if tcp.write_all(b"a").await.is_err() {
                            return opened.elapsed();
                        }
                    }
                }
            }
            opened.elapsed()
        }));
    }

    // /healthz answers quickly while all of that is open (new connection each time).
    for _ in 0..10 {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let asked = Instant::now();
        let health = http
            .get(served.url("/healthz"))
            .send()
            .await
            .expect("/healthz answers under load");
        assert_eq!(health.status(), 200);
        let took = asked.elapsed();
        assert!(took < Duration::from_millis(1500), "/healthz took {took:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every trickler is cut off after the header-read timeout (2 s), well before it gives up.
    for trickler in tricklers {
        let lasted = trickler.await.unwrap();
        assert!(
            lasted < Duration::from_secs(10),
            "a trickling connection lasted {lasted:?}"
        );
    }
    // Every idle connection is closed (EOF or reset) within its timeout plus slack.
    let deadline = started + Duration::from_secs(15);
    for mut tcp in idle {
        let mut buf = [0u8; 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                // Over-capacity connections get a 503 before the close.
                Ok(Ok(_)) => continue,
                Err(_) => panic!("an idle connection was still open after 15 s"),
            }
        }
    }
    // And the server still works normally.
    let health = reqwest::get(served.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    served.stop();
}
