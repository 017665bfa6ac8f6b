//! The `tom` binary as a newcomer and an operator use it: `tom serve` on an empty data
//! directory creates a development organisation and answers at once; a restart keeps its
//! records and does not bootstrap again; `tom verify`, `tom audit`, `tom identity` and
//! `tom demo smart-city` work against it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const TOM: &str = env!("CARGO_BIN_EXE_tom");

struct Served {
    child: Child,
    url: String,
    stdout: Vec<String>,
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
        let mut stdout = Vec::new();
        let url = loop {
            let line = lines
                .next()
                .expect("tom serve exited before listening")
                .unwrap();
            stdout.push(line.clone());
            if let Some(rest) = line.strip_prefix("TOM gateway listening on ") {
                break rest.split(' ').next().unwrap().to_owned();
            }
        };
        Served { child, url, stdout }
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

/// The development organisation's orchestrator and auditor tokens.
fn orchestrator_and_auditor(data_dir: &Path) -> (String, String) {
    let t = tokens(data_dir);
    (
        t["orchestrator"].as_str().unwrap().to_owned(),
        t["auditor"].as_str().unwrap().to_owned(),
    )
}

/// A container of the development organisation, as `POST /v1/containers` takes it.
fn container_body(id: &str) -> Value {
    json!({ "container_id": id, "org": "DevOrgMSP", "image": "example/hello:1", "digest": format!("sha256:{}", "ab".repeat(32)) })
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
async fn first_start_bootstraps_a_dev_org_and_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = Served::start(&data);
    let welcome = served.stdout.join("\n");
    assert!(
        welcome.contains("created the development organisation DevOrgMSP"),
        "{welcome}"
    );
    assert!(
        welcome.contains(&data.join("dev-credentials.json").display().to_string()),
        "prints where the tokens are: {welcome}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("dev-credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "dev credentials are private");
    }
    let (orchestrator, auditor) = orchestrator_and_auditor(&data);

    // The newcomer can call the API at once: the dev org is registered on the ledger.
    let (status, org) = call(
        reqwest::Method::GET,
        format!("{}/v1/orgs/DevOrgMSP", served.url),
        &auditor,
        None,
    )
    .await;
    assert_eq!(status, 200, "{org}");
    let container = container_body("hello");
    let (status, committed) = call(
        reqwest::Method::POST,
        format!("{}/v1/containers", served.url),
        &orchestrator,
        Some(container),
    )
    .await;
    assert_eq!(status, 201, "{committed}");
    assert_eq!(committed["record"]["agent"]["id"], "DevOrgMSP/orchestrator");
    let tx = committed["tx_id"].as_str().unwrap().to_owned();

    // tom audit against the running gateway.
    let (ok, out, err) = tom(&[
        "audit",
        "--gateway",
        &served.url,
        "--token",
        &auditor,
        "entity",
        "hello",
    ]);
    assert!(ok, "{err}");
    let entity: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (entity["type"].as_str(), entity["joined"]["tx_id"].as_str()),
        (Some("container"), Some(tx.as_str()))
    );
    // Gateway flags may follow the subcommand too.
    let (ok, out, err) = tom(&[
        "audit",
        "records",
        "--agent",
        "DevOrgMSP/orchestrator",
        "--gateway",
        &served.url,
        "--token",
        &auditor,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains(&tx), "{out}");
    let (ok, _, err) = tom(&["audit", "entity", "hello", "--gateway", &served.url]);
    assert!(!ok && err.contains("needs an API token"), "{err}");
    let (ok, _, err) = tom(&[
        "audit",
        "--gateway",
        &served.url,
        "--token",
        "not-a-token",
        "entity",
        "hello",
    ]);
    assert!(
        !ok && err.contains("401") && err.contains("unknown API token"),
        "{err}"
    );
    served.stop();

    // The ledger's files verify end to end.
    let (ok, out, err) = tom(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "tom verify: {out}{err}");

    // A device of the development organisation, issued with its CA while the gateway is down.
    let token_file = dir.path().join("sensor.token");
    let (ok, out, err) = tom(&[
        "identity",
        "issue",
        "--data-dir",
        data.to_str().unwrap(),
        "--name",
        "sensor-1",
        "--role",
        "device",
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("agent DevOrgMSP/sensor-1, role device"),
        "{out}"
    );
    let (ok, _, err) = tom(&[
        "identity",
        "issue",
        "--data-dir",
        data.to_str().unwrap(),
        "--name",
        "x",
        "--role",
        "king",
    ]);
    assert!(!ok && err.contains("--role \"king\""), "{err}");

    // Restart: no second bootstrap, same tokens, the acknowledged record is still there.
    let served = Served::start(&data);
    assert!(!served
        .stdout
        .join("\n")
        .contains("created the development organisation"));
    assert_eq!(tokens(&data)["orchestrator"], orchestrator.as_str());
    let (status, entity) = call(
        reqwest::Method::GET,
        format!("{}/v1/entities/hello", served.url),
        &auditor,
        None,
    )
    .await;
    assert_eq!(
        (status, entity["joined"]["tx_id"].as_str()),
        (200, Some(tx.as_str()))
    );

    // The issued device joins (its key signs the id-proof) and records data as itself.
    let cert_pem = std::fs::read_to_string(data.join("identities/sensor-1/cert.pem")).unwrap();
    let key_pem = std::fs::read_to_string(data.join("identities/sensor-1/key.pem")).unwrap();
    let sign = |m: &[u8]| tom_fixtures::pki::sign_p256(&key_pem, m).unwrap();
    let device = tom_contract::requests::IdentifyDevice::signed(
        "sensor-1",
        "DevOrgMSP",
        "sensor",
        &cert_pem,
        "n-1",
        tom_contract::simulation::DEFAULT_CHANNEL,
        sign,
    )
    .unwrap();
    let device = serde_json::to_value(device).unwrap();
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{}/v1/devices", served.url),
        &orchestrator,
        Some(device),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let hash = format!("sha256:{}", "cd".repeat(32));
    let data_item = tom_contract::requests::RecordData {
        data_id: "reading-1".into(),
        kind: "temperature".into(),
        hash,
        size: 4,
        location: "file:///r1".into(),
        generated_by: "sensor-1".into(),
        derived_from: vec![],
        claim: Default::default(),
    }
    .sign(tom_contract::simulation::DEFAULT_CHANNEL, "", sign)
    .unwrap();
    let data_item = serde_json::to_value(data_item).unwrap();
    let sensor_token = std::fs::read_to_string(&token_file).unwrap();
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{}/v1/data", served.url),
        sensor_token.trim(),
        Some(data_item),
    )
    .await;
    assert_eq!(
        (status, body["record"]["agent"]["id"].as_str()),
        (201, Some("DevOrgMSP/sensor-1")),
        "{body}"
    );
    served.stop();
}

#[test]
fn identity_add_then_serve_authenticates_the_new_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let f = tom_fixtures::identity("org1", "auditor");
    std::fs::write(dir.path().join("cert.pem"), f.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), f.key_pkcs8_pem).unwrap();
    let token_file = dir.path().join("auditor.token");
    let args = |name: &str| {
        vec![
            "identity".to_owned(),
            "add".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--name".into(),
            name.into(),
            "--msp".into(),
            "Org1MSP".into(),
            "--cert".into(),
            dir.path().join("cert.pem").display().to_string(),
            "--key".into(),
            dir.path().join("key.pem").display().to_string(),
            "--token-file".into(),
            token_file.display().to_string(),
        ]
    };
    let run = |a: Vec<String>| tom(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok, out, err) = run(args("city-auditor"));
    assert!(ok, "{err}");
    assert!(out.contains("agent Org1MSP/auditor, role auditor"), "{out}");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(token.starts_with("tom_") && token.len() == 68);
    // A second add under the same name is refused and names the problem.
    let (ok, _, err) = run(args("city-auditor"));
    assert!(
        !ok && err.contains("identity city-auditor exists already"),
        "{err}"
    );
    // A key that is not the certificate's is refused.
    std::fs::write(
        dir.path().join("key.pem"),
        tom_fixtures::identity("org1", "admin").key_pkcs8_pem,
    )
    .unwrap();
    let (ok, _, err) = run(args("other"));
    assert!(
        !ok && err.contains("does not belong to certificate"),
        "{err}"
    );
    let (ok, out, _) = tom(&["identity", "list", "--data-dir", data.to_str().unwrap()]);
    assert!(
        ok && out.contains("city-auditor\tOrg1MSP/auditor\tauditor"),
        "{out}"
    );
    // A data dir with identities is not bootstrapped; the added token works.
    let served = Served::start(&data);
    assert!(!data.join("dev-credentials.json").exists());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, body) = runtime.block_on(call(
        reqwest::Method::GET,
        format!("{}/v1/records", served.url),
        &token,
        None,
    ));
    assert_eq!(status, 200, "{body}");
    served.stop();
}

#[test]
fn serve_refuses_bad_flags_with_the_flag_named() {
    let (ok, _, err) = tom(&[
        "serve",
        "--listen",
        "localhost-ish",
        "--data-dir",
        "/tmp/unused-tom",
    ]);
    assert!(!ok && err.contains("--listen \"localhost-ish\""), "{err}");
    let (ok, _, err) = tom(&[
        "serve",
        "--fabric",
        "/nonexistent/profile.yaml",
        "--data-dir",
        "/tmp/unused-tom",
    ]);
    assert!(
        !ok && err.contains("--fabric /nonexistent/profile.yaml: no such connection profile file"),
        "{err}"
    );
    // On Fabric there is no development bootstrap: identities must be configured.
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.yaml");
    std::fs::write(&profile, "name: test\n").unwrap();
    let data = dir.path().join("data");
    let (ok, _, err) = tom(&[
        "serve",
        "--fabric",
        profile.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("holds no identities") && err.contains("tom identity add"),
        "{err}"
    );
    assert!(!data.join("dev-credentials.json").exists());
}

#[test]
fn demo_smart_city_prints_the_incident_audit() {
    let (ok, out, err) = tom(&["demo", "smart-city"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("ledger: embedded at"),
        "the in-process demo runs on the embedded ledger"
    );
    for expected in [
        "Incident audit: how did signal-ack-1 come about?",
        "signal-ack-1 wasDerivedFrom timing-plan-1",
        "timing-plan-1 wasDerivedFrom junction-summary-1",
        "junction-summary-1 wasDerivedFrom vehicle-position-1",
        "analyser used junction-summary-1",
        "analyser placedOn edge-node-1",
        "collector underContract collect-junction-counts",
        "vehicle-position-1 wasAttributedTo Org2MSP/car-42",
        "refused         org1/expired-device",
        "refused         rogue/device",
        "W3C PROV-JSON (GET /v1/prov/signal-ack-1): 10 entities",
    ] {
        assert!(
            out.contains(expected),
            "demo output lacks {expected:?}:\n{out}"
        );
    }
    assert_eq!(out.matches("PROV-DATA ").count(), 5, "{out}");
    assert_eq!(out.matches("PROV-ORCH ").count(), 4, "{out}");
}

#[test]
fn demo_against_a_running_gateway_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, out, err) = tom(&["demo", "install", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let credentials = data.join("demo-credentials.json");
    assert!(credentials.exists(), "{out}");
    let served = Served::start(&data);
    for run in 0..2 {
        let (ok, out, err) = tom(&[
            "demo",
            "smart-city",
            "--gateway",
            &served.url,
            "--credentials",
            credentials.to_str().unwrap(),
        ]);
        assert!(ok, "run {run}: {out}\n{err}");
        assert!(
            out.contains("Incident audit: how did signal-ack-1-"),
            "run {run}: ids carry a per-run suffix:\n{out}"
        );
        assert_eq!(out.matches("PROV-DATA ").count(), 5, "run {run}: {out}");
    }
    let (ok, _, err) = tom(&["demo", "smart-city", "--gateway", &served.url]);
    assert!(!ok && err.contains("--credentials"), "{err}");
    served.stop();
}

/// Issue 11: a bookmark printed by `tom audit records` fetches page 2 when passed back on the
/// command line (it once held NUL bytes, which no argv can carry), and the inventory lists
/// answer on the embedded ledger with URL-safe bookmarks.
#[tokio::test(flavor = "multi_thread")]
async fn audit_records_page_two_through_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = Served::start(&data);
    let (orchestrator, auditor) = orchestrator_and_auditor(&data);
    for name in ["c-1", "c-2", "c-3"] {
        let container = container_body(name);
        let (status, committed) = call(
            reqwest::Method::POST,
            format!("{}/v1/containers", served.url),
            &orchestrator,
            Some(container),
        )
        .await;
        assert_eq!(status, 201, "{committed}");
    }
    let page = |bookmark: Option<&str>| {
        let mut args = vec![
            "audit",
            "--gateway",
            &served.url,
            "--token",
            &auditor,
            "records",
            "--agent",
            "DevOrgMSP/orchestrator",
            "--page-size",
            "2",
        ];
        if let Some(b) = bookmark {
            args.extend(["--bookmark", b]);
        }
        let (ok, out, err) = tom(&args);
        assert!(ok, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let first = page(None);
    assert_eq!(first["records"].as_array().unwrap().len(), 2, "{first}");
    let bookmark = first["bookmark"].as_str().unwrap().to_owned();
    assert!(
        !bookmark.is_empty()
            && bookmark
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "{bookmark:?}"
    );
    let second = page(Some(&bookmark));
    let ids: Vec<&str> = first["records"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["records"].as_array().unwrap())
        .map(|r| r["subjects"][0].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c-1", "c-2", "c-3"]);
    assert_eq!(second["bookmark"], "");

    // The inventory on the embedded ledger.
    let (status, listed) = call(
        reqwest::Method::GET,
        format!(
            "{}/v1/containers?org=DevOrgMSP&state=joined&page_size=2",
            served.url
        ),
        &auditor,
        None,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    let (status, rest) = call(
        reqwest::Method::GET,
        format!(
            "{}/v1/containers?org=DevOrgMSP&state=joined&page_size=2&bookmark={}",
            served.url,
            listed["bookmark"].as_str().unwrap()
        ),
        &auditor,
        None,
    )
    .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["items"][0]["id"], "c-3", "{rest}");
    served.stop();
}

/// Issue 11: `tom identity issue|rotate|revoke` take effect in a running `tom serve` without a
/// restart; rotation keeps old and new valid during the overlap; unknown tokens get a hint.
#[test]
fn identity_changes_are_live_rotation_overlaps_and_revocation_bites() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = Served::start(&data);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = |token: &str| {
        runtime.block_on(call(
            reqwest::Method::GET,
            format!("{}/v1/orgs/DevOrgMSP", served.url),
            token,
            None,
        ))
    };
    let d = data.to_str().unwrap();
    let old_file = dir.path().join("watcher.token");
    let (ok, out, err) = tom(&[
        "identity",
        "issue",
        "--data-dir",
        d,
        "--name",
        "watcher",
        "--role",
        "auditor",
        "--token-file",
        old_file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("no restart needed"), "{out}");
    let old = std::fs::read_to_string(&old_file)
        .unwrap()
        .trim()
        .to_owned();
    // No restart: the new token works at once.
    let (code, body) = status(&old);
    assert_eq!(code, 200, "{body}");
    // Rotate: new and old both valid during the overlap.
    let new_file = dir.path().join("watcher-2.token");
    let (ok, _, err) = tom(&[
        "identity",
        "rotate",
        "--data-dir",
        d,
        "--name",
        "watcher",
        "--overlap",
        "600",
        "--token-file",
        new_file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let new = std::fs::read_to_string(&new_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(status(&new).0, 200);
    assert_eq!(
        status(&old).0,
        200,
        "the old token is valid during the overlap"
    );
    // Revoke the old one: refused within a second, the new one still works.
    let (ok, _, err) = tom(&[
        "identity",
        "revoke",
        "--data-dir",
        d,
        "--token-file",
        old_file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    std::thread::sleep(Duration::from_millis(1100));
    let (code, body) = status(&old);
    assert_eq!(code, 401, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("without a restart"),
        "the refusal says what to check: {body}"
    );
    assert_eq!(status(&new).0, 200);
    // An overlap that ends: rotate with 0 s, and the previous token is refused after it.
    let third_file = dir.path().join("watcher-3.token");
    let (ok, _, err) = tom(&[
        "identity",
        "rotate",
        "--data-dir",
        d,
        "--name",
        "watcher",
        "--overlap",
        "0",
        "--token-file",
        third_file.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(status(&new).0, 401, "past the overlap");
    let third = std::fs::read_to_string(&third_file)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(status(&third).0, 200);
    served.stop();
}

/// Issue 11: `tom demo install` warns that the fixture keys are public, and for a Fabric gateway
/// (`--fabric PROFILE`) its next step names `--fabric` and the profile's channel.
#[test]
fn demo_install_warns_about_public_keys_and_its_next_step_names_fabric() {
    let dir = tempfile::tempdir().unwrap();
    let warned = |out: &str| {
        out.lines().any(|l| {
            l.starts_with("WARNING: ")
                && l.contains("private keys")
                && l.contains("published in TOM's source repository")
                && l.contains("demo only")
        })
    };

    let fixture_pki = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/pki");
    let public = ["--fixture-pki", fixture_pki, "--insecure-public-demo-keys"];

    // A fresh demo PKI (the default) has no public keys to warn about.
    let fresh_pki = dir.path().join("fresh-pki");
    let (ok, out, err) = tom(&["demo", "install", "--data-dir", fresh_pki.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(!warned(&out) && !warned(&err), "{out}\n{err}");

    let embedded = dir.path().join("embedded");
    let mut args = vec!["demo", "install", "--data-dir", embedded.to_str().unwrap()];
    args.extend(public);
    let (ok, out, err) = tom(&args);
    assert!(ok, "{err}");
    assert!(warned(&out), "no WARNING line on stdout: {out}");
    assert!(warned(&err), "no WARNING line on stderr: {err}");
    assert!(
        out.contains(&format!(
            "`tom serve --data-dir {}`, then run `tom demo smart-city --gateway",
            embedded.display()
        )),
        "{out}"
    );
    assert!(!out.contains("--fabric"), "{out}");

    let fabric = dir.path().join("fabric");
    std::fs::create_dir_all(&fabric).unwrap();
    let profile = fabric.join("profile.json");
    let write = |channel: &str| {
        std::fs::write(
            &profile,
            json!({
                "peer_endpoint": "https://127.0.0.1:7051", "tls_ca_certificate": "tls-ca.pem",
                "msp_id": "Org1MSP", "certificate": "cert.pem", "private_key": "key.pem",
                "channel": channel, "chaincode": "tom"
            })
            .to_string(),
        )
        .unwrap()
    };
    write("city");
    let (ok, out, err) = tom(&[
        "demo",
        "install",
        "--data-dir",
        fabric.to_str().unwrap(),
        "--fabric",
        profile.to_str().unwrap(),
        public[0],
        public[1],
        public[2],
    ]);
    assert!(ok, "{err}");
    assert!(warned(&out) && warned(&err), "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "`tom serve --data-dir {} --fabric {}`",
            fabric.display(),
            profile.display()
        )),
        "{out}"
    );
    assert!(out.contains("--ledger city`"), "{out}");
    // The default channel needs no --ledger.
    write("tom");
    let (ok, out, _) = tom(&[
        "demo",
        "install",
        "--data-dir",
        fabric.to_str().unwrap(),
        "--fabric",
        profile.to_str().unwrap(),
        public[0],
        public[1],
        public[2],
    ]);
    assert!(
        ok && out.contains("--fabric ") && !out.contains("--ledger"),
        "{out}"
    );

    // A profile that does not load is refused before anything is installed, naming the field.
    write("");
    let fresh = dir.path().join("fresh");
    let (ok, _, err) = tom(&[
        "demo",
        "install",
        "--data-dir",
        fresh.to_str().unwrap(),
        "--fabric",
        profile.to_str().unwrap(),
        public[0],
        public[1],
        public[2],
    ]);
    assert!(!ok, "an empty channel was accepted");
    assert!(err.contains("channel"), "{err}");
    assert!(!fresh.exists(), "installed despite the bad profile");
}

/// Issue 12: `tom audit entity|history|lineage|records` print aligned, wrapped text for a person
/// (forced here with `--format text`; the default on a terminal) and the gateway's JSON into a
/// pipe or with `--json`, as scripts always got.
#[tokio::test(flavor = "multi_thread")]
async fn audit_subcommands_print_text_for_people_and_json_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = Served::start(&data);
    let (orchestrator, auditor) = orchestrator_and_auditor(&data);
    let mut txs = Vec::new();
    for name in ["c-1", "c-2"] {
        let container = container_body(name);
        let (status, committed) = call(
            reqwest::Method::POST,
            format!("{}/v1/containers", served.url),
            &orchestrator,
            Some(container),
        )
        .await;
        assert_eq!(status, 201, "{committed}");
        txs.push(committed["tx_id"].as_str().unwrap().to_owned());
    }
    let audit = |args: &[&str]| {
        let mut all = vec!["audit", "--gateway", &served.url, "--token", &auditor];
        all.extend_from_slice(args);
        let (ok, out, err) = tom(&all);
        assert!(ok, "tom {all:?}: {err}");
        assert!(!out.contains('\u{1b}'), "colour codes: {out:?}");
        out
    };

    // Into a pipe (as here) the default is the gateway's JSON, the same as --json and
    // --format json.
    for query in [
        &["entity", "c-1"][..],
        &["history", "c-1"],
        &["lineage", "c-1"],
        &["records", "--agent", "DevOrgMSP/orchestrator"],
    ] {
        let piped = audit(query);
        let value: Value = serde_json::from_str(&piped)
            .unwrap_or_else(|e| panic!("{query:?}: not JSON ({e}): {piped}"));
        assert!(!value.is_null());
        assert_eq!(piped, audit(&[query, &["--json"]].concat()), "{query:?}");
        assert_eq!(
            piped,
            audit(&[&["--format", "json"], query].concat()),
            "{query:?}"
        );
    }

    // entity: one aligned `key  value` line per field, nested keys dotted, PEM shortened.
    let text = audit(&["--format", "text", "entity", "c-1"]);
    assert!(!text.trim_start().starts_with('{'), "{text}");
    let column = |line: &str| {
        line.find("  ")
            .map(|i| i + line[i..].len() - line[i..].trim_start().len())
    };
    let value_of = |key: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .map(|l| l[key.len()..].trim().to_owned())
    };
    assert_eq!(value_of("id").as_deref(), Some("c-1"), "{text}");
    assert_eq!(value_of("type").as_deref(), Some("container"), "{text}");
    assert_eq!(
        value_of("joined.by.id").as_deref(),
        Some("DevOrgMSP/orchestrator"),
        "{text}"
    );
    assert_eq!(
        value_of("joined.tx_id").as_deref(),
        Some(txs[0].as_str()),
        "{text}"
    );
    let columns: std::collections::BTreeSet<Option<usize>> = text
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(column)
        .collect();
    assert_eq!(columns.len(), 1, "values start in one column:\n{text}");
    assert!(
        text.lines()
            .all(|l| l.len() <= 100 || l.split_whitespace().count() <= 2),
        "wrapped to 100 columns (a longer line is a key and one unbreakable word):\n{text}"
    );

    // history: each version with its time and transaction, then its fields, indented.
    let text = audit(&["history", "c-1", "--format", "text"]);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("version 1  ") && first.ends_with(&format!("tx {}", txs[0])),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("  id ") && l.trim_end().ends_with("c-1")),
        "{text}"
    );

    // records: a table with a header, one row per record, the count, and the next page.
    let text = audit(&[
        "--format",
        "text",
        "records",
        "--agent",
        "DevOrgMSP/orchestrator",
    ]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("KIND") && lines[0].contains("SUBJECTS"),
        "{text}"
    );
    for (tx, name) in txs.iter().zip(["c-1", "c-2"]) {
        let row = lines
            .iter()
            .find(|l| l.contains(&tx[..12]))
            .unwrap_or_else(|| panic!("no row for {tx}:\n{text}"));
        assert!(
            row.contains("PROV-ID-create")
                && row.contains("DevOrgMSP/orchestrator")
                && row.trim_end().ends_with(name),
            "{row}"
        );
        assert_eq!(
            row.find("PROV-ID-create"),
            lines[0].find("KIND"),
            "aligned under KIND:\n{text}"
        );
    }
    assert_eq!(lines.last().unwrap().to_owned(), "2 records", "{text}");
    let text = audit(&[
        "--format",
        "text",
        "records",
        "--agent",
        "DevOrgMSP/orchestrator",
        "--page-size",
        "1",
    ]);
    assert!(text.contains("1 record\nmore: add --bookmark "), "{text}");

    // lineage: fields, not JSON.
    let text = audit(&["--format", "text", "lineage", "c-1"]);
    assert!(
        !text.trim_start().starts_with('{') && text.contains("c-1"),
        "{text}"
    );
    served.stop();
}

/// `tom audit lineage` with `--limit`, `--fan-out` and `--bookmark` against `tom serve`: a
/// partial answer tells the person (on stderr, so stdout stays one JSON document) that it is
/// truncated and the exact command that continues it; that command gets the rest.
#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_lineage_prints_the_command_that_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = Served::start(&data);
    let (orchestrator, auditor) = orchestrator_and_auditor(&data);
    let container = container_body("c-1");
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
