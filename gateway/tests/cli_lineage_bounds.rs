//! `tom audit lineage` with `--limit`, `--fan-out` and `--bookmark` against `tom serve`: a
//! partial answer tells the person (on stderr, so stdout stays one JSON document) that it is
//! truncated and the exact command that continues it; that command gets the rest.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const TOM: &str = env!("CARGO_BIN_EXE_tom");

struct Served {
    child: Child,
    url: String,
}

impl Served {
    /// Start `tom serve` on a free port and wait for its "listening on" line.
    fn start(data_dir: &Path) -> Served {
        let mut child = Command::new(TOM)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("tom serve exited before listening")
                .unwrap();
            if let Some(rest) = line.strip_prefix("TOM gateway listening on ") {
                break rest.split(' ').next().unwrap().to_owned();
            }
        };
        Served { child, url }
    }

    /// SIGTERM, and the exit status must be success (graceful shutdown).
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "tom serve exits cleanly on SIGTERM: {status}"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("tom serve did not stop within 10 s of SIGTERM");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Only if a test failed before stop(): never leave the server running.
        let _ = self.child.kill();
    }
}

fn tokens(data_dir: &Path) -> Value {
    let text = std::fs::read_to_string(data_dir.join("dev-credentials.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["tokens"].clone()
}

async fn call(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn tom(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(TOM)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_lineage_prints_the_command_that_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = Served::start(&data);
    let t = tokens(&data);
    let (orchestrator, auditor) = (
        t["orchestrator"].as_str().unwrap().to_owned(),
        t["auditor"].as_str().unwrap().to_owned(),
    );
    let container = json!({ "container_id": "c-1", "org": "DevOrgMSP", "image": "example/hello:1", "digest": format!("sha256:{}", "ab".repeat(32)) });
    let post = |path: &str, body: Value| {
        call(
            reqwest::Method::POST,
            format!("{}{path}", served.url),
            &orchestrator,
            Some(body),
        )
    };
    let (status, reply) = post("/v1/containers", container).await;
    assert_eq!(status, 201, "{reply}");
    let deadline =
        tom_contract::Timestamp::from_seconds(tom_gateway::ledger::memory::now().seconds + 3600)
            .to_rfc3339();
    for k in ["k-1", "k-2"] {
        let contract = json!({ "contract_id": k, "contractor": "c-1", "uses": [], "generates": [{ "kind": "plan" }], "deadline": deadline });
        let (status, reply) = post("/v1/contracts", contract).await;
        assert_eq!(status, 201, "{reply}");
    }
    let lineage = |extra: &[&str]| {
        let mut args = vec![
            "audit",
            "--gateway",
            &served.url,
            "--token",
            &auditor,
            "lineage",
            "c-1",
            "--direction",
            "up",
            "--fan-out",
            "1",
            "--json",
        ];
        args.extend(extra);
        let (ok, out, err) = tom(&args);
        assert!(ok, "{err}");
        (serde_json::from_str::<Value>(&out).unwrap(), err)
    };
    let (first, note) = lineage(&[]);
    assert_eq!(first["truncated"], true, "{first:#}");
    let bookmark = first["bookmark"].as_str().unwrap();
    assert!(
        note.contains(&format!(
            "truncated: this is part of the lineage; continue with --bookmark {bookmark}"
        )),
        "{note}"
    );
    assert!(
        note.contains(&format!(
            "tom audit lineage c-1 --direction up --fan-out 1 --bookmark {bookmark}"
        )),
        "{note}"
    );
    assert!(
        first["nodes"].get("k-1").is_some() && first["nodes"].get("k-2").is_none(),
        "{first:#}"
    );
    let (rest, note) = lineage(&["--bookmark", bookmark]);
    assert!(rest.get("truncated").is_none(), "{rest:#}");
    assert!(!note.contains("truncated"), "{note}");
    assert!(rest["nodes"].get("k-2").is_some(), "{rest:#}");
    served.stop();
}
