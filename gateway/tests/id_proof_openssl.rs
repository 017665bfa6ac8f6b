//! Issue 11, "a newcomer": the device id-proof worked example of `POST /v1/devices`
//! (`gateway/src/api/device_id_proof.md`, the OpenAPI description of `proof`) runs as written.
//!
//! The shell block is taken from the document itself, so the two cannot drift, and run with a
//! fixture device's certificate and key against `tom serve` on the embedded ledger: it joins
//! the device (201). The same block with the usual mistake (the SHA-256 of the PEM file instead
//! of the certificate's DER) gets a 403 whose message names the digest expected and why.
//! Needs `openssl`, `jq` and `curl` (`scripts/setup/11-openssl-jq-curl.sh`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const TOM: &str = env!("CARGO_BIN_EXE_tom");
const DOC: &str = include_str!("../src/api/device_id_proof.md");
const FENCE: &str = "```sh title=\"device id-proof\"\n";
/// The right digest, and the mistake the document warns about.
const DER_DIGEST: &str = "openssl x509 -in device.pem -outform DER | sha256sum";
const PEM_DIGEST: &str = "sha256sum device.pem";

/// The document's worked example, exactly as written.
fn worked_example() -> String {
    let start = DOC
        .find(FENCE)
        .expect("device_id_proof.md has a ```sh title=\"device id-proof\" block")
        + FENCE.len();
    let end = DOC[start..].find("\n```").expect("the block is closed") + start;
    DOC[start..=end].to_owned()
}

struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tom serve` on `data_dir` (port 0): the child and its URL.
fn serve(data_dir: &Path) -> (Served, String) {
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
    (Served(child), url)
}

/// Runs `script` with bash (`-euo pipefail`) in `dir`: its stdout, or a panic with its output.
fn sh(dir: &Path, script: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the script failed ({}):\n{script}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The status line the example prints, and the body of `response.json`.
fn reply(dir: &Path, stdout: &str) -> (u16, Value) {
    let status = stdout
        .lines()
        .find_map(|l| l.trim().parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no status line in {stdout:?}"));
    let body = std::fs::read(dir.join("response.json")).unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[test]
fn the_documented_openssl_sequence_joins_a_device_and_the_pem_digest_mistake_is_named() {
    for tool in ["openssl", "jq", "curl", "sha256sum", "base64"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is missing: run scripts/setup/11-openssl-jq-curl.sh"
        );
    }
    let example = worked_example();
    assert!(example.contains(DER_DIGEST), "{example}");
    let mistake = example.replace(DER_DIGEST, PEM_DIGEST);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let installed = Command::new(TOM)
        .args(["demo", "install", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(installed.status.success(), "{installed:?}");
    // The device is one of the freshly issued demo PKI's, so its certificate chains to the CA
    // the demo organisation registered.
    let pki = data.join("demo-pki/org1");
    std::fs::copy(pki.join("traffic-light-1.pem"), work.join("device.pem")).unwrap();
    std::fs::copy(pki.join("traffic-light-1.key.pem"), work.join("device.key")).unwrap();
    let credentials: Value =
        serde_json::from_slice(&std::fs::read(data.join("demo-credentials.json")).unwrap())
            .unwrap();
    let token = |name: &str| credentials["tokens"][name].as_str().unwrap().to_owned();
    let (_served, url) = serve(&data);
    let (admin, orchestrator) = (token("org1.admin"), token("org1.orchestrator"));
    let env = [
        ("TOM_URL", url.as_str()),
        ("TOM_TOKEN", orchestrator.as_str()),
    ];

    // The organisation is registered by its admin before its devices join.
    let registered = sh(
        &work,
        r#"jq -n --rawfile ca "$CA" '{msp_id: "Org1MSP", ca_certificates: [$ca]}' > org.json
curl -sS -o response.json -w '%{http_code}\n' -H "Authorization: Bearer $ADMIN" \
    -H 'Content-Type: application/json' --data-binary @org.json "$TOM_URL/v1/orgs""#,
        &[
            ("TOM_URL", url.as_str()),
            ("ADMIN", admin.as_str()),
            ("CA", pki.join("ca.pem").to_str().unwrap()),
        ],
    );
    let (status, body) = reply(&work, &registered);
    assert_eq!(status, 201, "{body}");

    // The mistake first (a refusal records nothing, so the device can still join after it).
    let (status, body) = reply(&work, &sh(&work, &mistake, &env));
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden", "{body}");
    let der_sha256 = sh(&work, &format!("{DER_DIGEST} | cut -d' ' -f1"), &[]);
    let pem_sha256 = sh(&work, &format!("{PEM_DIGEST} | cut -d' ' -f1"), &[]);
    let error = body["error"].as_str().unwrap();
    for part in [
        "id-proof for device traffic-light-1 was signed for another claim: subject[0].digest differs",
        pem_sha256.trim(),
        &format!("the certificate's SHA-256 is {}", der_sha256.trim()),
        "DER encoding",
        "not of its PEM text",
    ] {
        assert!(error.contains(part), "{part:?} not in {error:?}");
    }

    // As written: the device joins.
    let (status, body) = reply(&work, &sh(&work, &example, &env));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "VALID", "{body}");
    assert_eq!(body["record"]["kind"], "PROV-ID-create", "{body}");
    assert_eq!(body["record"]["subjects"][0], "traffic-light-1", "{body}");
    // The ledger keeps the envelope as sent: its payload is the statement the example wrote.
    let entity = sh(
        &work,
        r#"curl -sS --fail-with-body -H "Authorization: Bearer $TOM_TOKEN" "$TOM_URL/v1/entities/traffic-light-1""#,
        &env,
    );
    let entity: Value = serde_json::from_str(&entity).unwrap();
    let statement = sh(&work, "base64 -w0 statement.json", &[]);
    let proof = serde_json::to_string(&entity).unwrap();
    assert!(
        proof.contains(&format!("\"payload\":\"{statement}\"")),
        "the stored proof is not the statement sent: {entity}"
    );
}
