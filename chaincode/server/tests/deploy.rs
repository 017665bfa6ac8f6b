//! The deployment artefacts that can be checked without a Fabric network: the CCaaS package
//! (byte-deterministic, with the metadata and connection.json Fabric's ccaas builder reads), the
//! compose file (valid for the Compose tool), and the chaincode image built from the project's
//! own binary (it starts and serves a peer). No Fabric image can be pulled here; the network
//! itself is exercised by an operator with scripts/network-up.sh and deploy-chaincode.sh.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::scenario::Network;
use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

#[track_caller]
fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn package(out: &Path, extra: &[&str]) -> String {
    let output = run(Command::new("bash")
        .arg(repo().join("scripts/package-chaincode.sh"))
        .arg("--out")
        .arg(out)
        .args(extra));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The content of `name` in a list of archive members.
fn member<'a>(files: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &files
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in the archive"))
        .1
}

/// The files of a tar.gz, in archive order, with their contents.
fn untar(bytes: &[u8], dir: &Path) -> Vec<(String, Vec<u8>)> {
    let archive = dir.join("archive.tar.gz");
    std::fs::write(&archive, bytes).unwrap();
    let names = run(Command::new("tar").arg("-tzf").arg(&archive));
    String::from_utf8(names.stdout)
        .unwrap()
        .lines()
        .map(|name| {
            let content = run(Command::new("tar").arg("-xzOf").arg(&archive).arg(name)).stdout;
            (name.to_owned(), content)
        })
        .collect()
}

#[test]
fn the_ccaas_package_is_byte_deterministic_and_says_where_the_chaincode_is() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let seconds = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let first = package(one.path(), &[]);
    // The second package is made in a later wall-clock second than the first was finished in,
    // so a timestamp in the archive would show: wait for that second (at most one), polling.
    let finished = seconds();
    while seconds() == finished {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let second = package(two.path(), &[]);
    assert_eq!(first, second, "same inputs, same package id");
    let bytes = std::fs::read(one.path().join("tom_0.1.tar.gz")).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(two.path().join("tom_0.1.tar.gz")).unwrap()
    );

    // The id is label:sha256(package), and the chaincode server accepts it as CHAINCODE_ID.
    assert_eq!(first, format!("tom_0.1:{}", hex::encode(sha256(&bytes))));
    tom_chaincode::Config::from_lookup(|name| match name {
        "CHAINCODE_ID" => Some(first.clone()),
        "CHAINCODE_SERVER_ADDRESS" => Some("127.0.0.1:0".into()),
        _ => None,
    })
    .unwrap();

    let scratch = tempfile::tempdir().unwrap();
    let files = untar(&bytes, scratch.path());
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["metadata.json", "code.tar.gz"]);
    let metadata: serde_json::Value =
        serde_json::from_slice(member(&files, "metadata.json")).unwrap();
    assert_eq!(
        metadata,
        serde_json::json!({ "type": "ccaas", "label": "tom_0.1" })
    );
    let code = untar(member(&files, "code.tar.gz"), scratch.path());
    assert_eq!(code.len(), 1);
    assert_eq!(code[0].0, "connection.json");
    let connection: serde_json::Value = serde_json::from_slice(&code[0].1).unwrap();
    assert_eq!(
        connection,
        serde_json::json!({ "address": "tom-chaincode:9999", "dial_timeout": "10s", "tls_required": false })
    );
}

#[test]
fn a_tls_package_carries_the_root_and_client_certificates() {
    let tls = common::tls::material();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (ca, cert, key) = (
        write("ca.pem", &tls.ca_pem),
        write("client.pem", &tls.client.cert_pem),
        write("client.key", &tls.client.key_pem),
    );
    let id = package(
        dir.path(),
        &[
            "--label",
            "tom_tls",
            "--address",
            "cc.example.com:7777",
            "--tls-root-cert",
            &ca,
            "--client-cert",
            &cert,
            "--client-key",
            &key,
        ],
    );
    assert!(id.starts_with("tom_tls:"), "{id}");
    let bytes = std::fs::read(dir.path().join("tom_tls.tar.gz")).unwrap();
    let files = untar(&bytes, dir.path());
    let code = untar(member(&files, "code.tar.gz"), dir.path());
    let connection: serde_json::Value = serde_json::from_slice(&code[0].1).unwrap();
    assert_eq!(connection["address"], "cc.example.com:7777");
    assert_eq!(connection["tls_required"], true);
    assert_eq!(connection["client_auth_required"], true);
    assert_eq!(connection["root_cert"], tls.ca_pem.as_str());
    assert_eq!(connection["client_cert"], tls.client.cert_pem.as_str());
    assert_eq!(connection["client_key"], tls.client.key_pem.as_str());

    // Bad input is refused with the reason.
    let refused = Command::new("bash")
        .arg(repo().join("scripts/package-chaincode.sh"))
        .args(["--out", dir.path().to_str().unwrap(), "--label", "-bad"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("must start with a letter or digit"));
}

/// `docker compose` (v2) or `docker-compose` (v1), whichever is installed.
fn compose() -> Command {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if v2 {
        let mut command = Command::new("docker");
        command.arg("compose");
        command
    } else if Command::new("docker-compose")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        Command::new("docker-compose")
    } else {
        panic!("neither `docker compose` nor `docker-compose` is installed; run scripts/setup/30-docker-compose.sh");
    }
}

#[test]
fn the_compose_file_is_valid_and_uses_official_fabric_images() {
    let file = repo().join("docker-compose.yaml");
    run(compose().arg("-f").arg(&file).args(["config", "-q"]));
    let resolved =
        String::from_utf8(run(compose().arg("-f").arg(&file).arg("config")).stdout).unwrap();
    for image in [
        "hyperledger/fabric-orderer:2.5",
        "hyperledger/fabric-peer:2.5",
        "hyperledger/fabric-tools:2.5",
        "tom-chaincode:dev",
    ] {
        assert!(
            resolved.contains(&format!("image: {image}")),
            "{image} missing from:\n{resolved}"
        );
    }
    for service in [
        "orderer.example.com:",
        "peer0.org1.example.com:",
        "peer0.org2.example.com:",
        "tom-chaincode:",
    ] {
        assert!(resolved.contains(service), "service {service} missing");
    }
    assert!(resolved.contains("CHAINCODE_SERVER_ADDRESS: 0.0.0.0:9999"));
    // package-chaincode.sh's default address (tom-chaincode:9999) names this service.
    assert!(resolved.contains("container_name: tom-chaincode"));
}

fn docker_reachable() {
    let info = Command::new("docker").arg("info").output();
    if !info.is_ok_and(|o| o.status.success()) {
        panic!("no Docker engine is reachable (docker info failed): this test runs the chaincode image; start the engine");
    }
    let image = Command::new("docker")
        .args(["image", "inspect", "tom-chaincode:dev"])
        .output()
        .unwrap();
    assert!(
        image.status.success(),
        "image tom-chaincode:dev is missing: run scripts/setup/30-chaincode-image.sh"
    );
}

/// Removes the container however the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

#[tokio::test]
async fn the_chaincode_image_runs_the_projects_binary_and_serves_a_peer() {
    docker_reachable();
    let version = run(Command::new("docker").args([
        "run",
        "--rm",
        "--network",
        "none",
        "tom-chaincode:dev",
        "--version",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("tom-chaincode {}", env!("CARGO_PKG_VERSION"))
    );
    let unconfigured = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "tom-chaincode:dev"])
        .output()
        .unwrap();
    assert!(!unconfigured.status.success());
    assert!(String::from_utf8_lossy(&unconfigured.stderr).contains("CHAINCODE_ID: not set"));

    // Served on a loopback-published port, the container answers a driver peer.
    let name = format!("tom-chaincode-test-{}", std::process::id());
    let started = run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        "127.0.0.1::9999",
        "-e",
        &format!("CHAINCODE_ID={CHAINCODE_ID}"),
        "tom-chaincode:dev",
    ]));
    let container = Container(name);
    assert!(!started.stdout.is_empty());
    let port = run(Command::new("docker").args(["port", &container.0, "9999/tcp"]));
    let address: std::net::SocketAddr = String::from_utf8_lossy(&port.stdout)
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // docker-proxy accepts on the published port before the server inside listens, so wait
    // until a stream really reaches the chaincode's REGISTER.
    let connect = || async {
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap();
        endpoint.connect().await.map_err(|e| e.to_string())
    };
    let mut ready = Err(String::from("not tried"));
    for _ in 0..100 {
        ready = common::tls::reaches_register(connect().await).await;
        if ready.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ready.expect("the container never served a stream");
    let peer = Peer::connect("peer0.org1", connect().await.unwrap()).await;
    let network = Network::new(vec![peer]);
    network.register_org("org1").await.unwrap();
    let org = network
        .query(
            id("org1", "auditor"),
            "GetOrg",
            serde_json::json!({ "id": "Org1MSP" }),
        )
        .await
        .unwrap();
    assert_eq!(org["msp_id"], "Org1MSP");

    // `docker stop` sends SIGTERM: the container stops well within its grace period.
    let stopping = std::time::Instant::now();
    run(Command::new("docker").args(["stop", "--time", "10", &container.0]));
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(6),
        "docker stop took {:?}",
        stopping.elapsed()
    );
    let state = run(Command::new("docker").args([
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &container.0,
    ]));
    assert_eq!(
        String::from_utf8_lossy(&state.stdout).trim(),
        "0",
        "clean exit on SIGTERM"
    );
}
