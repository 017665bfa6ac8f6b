//! The real `tom-chaincode` binary: configuration from the environment, TLS from PEM files,
//! the smart-city scenario over mutual TLS, and SIGTERM while peers keep their streams open.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::scenario::Network;
use common::tls::{channel, material};
use common::*;
use fabric_shim_protos::peer::chaincode_message::Type;

const BINARY: &str = env!("CARGO_BIN_EXE_tom-chaincode");

/// Wait (polling) for the process to exit; `None` if it is still running after `limit`.
fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_binary_within_seconds_while_peers_hold_streams_open() {
    let mut binary = Binary::start(&[
        ("CHAINCODE_ID", CHAINCODE_ID),
        ("CHAINCODE_SERVER_ADDRESS", "127.0.0.1:0"),
    ]);
    let mut org1 = Peer::connect("peer0.org1", plain_channel(binary.address).await).await;
    let mut org2 = Peer::connect("peer0.org2", plain_channel(binary.address).await).await;
    let network = Network::new(vec![]);
    let ready = org1
        .endorse(&network.clock.proposal(
            id("org1", "auditor"),
            "org.hyperledger.fabric:GetMetadata",
            &[],
        ))
        .await;
    assert!(ready.ok());
    // A third peer leaves a transaction hanging on an unanswered GET_STATE.
    let mut stalled = RawStream::open(plain_channel(binary.address).await)
        .await
        .unwrap();
    stalled.handshake(CHAINCODE_ID).await;
    let tx = network.clock.proposal(
        id("org1", "auditor"),
        "GetOrg",
        &[br#"{"id":"Org1MSP"}"#.to_vec()],
    );
    stalled.send(transaction_message(&tx)).await;
    stalled.expect(Type::GetState).await;

    let started = Instant::now();
    binary.signal("TERM");
    let status =
        tokio::task::block_in_place(|| wait_exit(&mut binary.child, Duration::from_secs(6)));
    let took = started.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running 6 s after SIGTERM; log:\n{}",
            binary.log_text()
        )
    });
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        binary.log_text()
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    for peer in [&mut org1, &mut org2] {
        if let Err(status) = peer.ended().await {
            assert!(
                matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                ),
                "{}: {status}",
                peer.name
            );
        }
    }
    let log = binary.log_text();
    assert!(
        log.contains("SIGTERM received") && log.contains("chaincode server stopped"),
        "log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_the_smart_city_scenario_over_mutual_tls_from_pem_files() {
    let tls = material();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (cert, key, ca) = (
        write("server.crt", &tls.server.cert_pem),
        write("server.key", &tls.server.key_pem),
        write("ca.crt", &tls.ca_pem),
    );
    let binary = Binary::start(&[
        ("CHAINCODE_ID", CHAINCODE_ID),
        ("CHAINCODE_SERVER_ADDRESS", "127.0.0.1:0"),
        ("CHAINCODE_TLS_CERT", &cert),
        ("CHAINCODE_TLS_KEY", &key),
        ("CHAINCODE_CLIENT_CA_CERT", &ca),
    ]);
    let port = binary.address.port();
    let org1 = Peer::connect(
        "peer0.org1",
        channel(port, &tls.ca_pem, Some(&tls.client)).await.unwrap(),
    )
    .await;
    let org2 = Peer::connect(
        "peer0.org2",
        channel(port, &tls.ca_pem, Some(&tls.client)).await.unwrap(),
    )
    .await;
    let network = Network::new(vec![org1, org2]);
    network.smart_city().await;
    assert_eq!(network.log.lock().unwrap().len(), 22);
    let log = binary.log_text();
    assert!(
        log.contains("tls=true") && log.contains("client_auth=true"),
        "log:\n{log}"
    );
}

#[test]
fn bad_configuration_stops_the_binary_with_a_message_naming_the_variable() {
    let run = |env: &[(&str, &str)]| {
        let output = Command::new(BINARY)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run(&[]);
    assert!(!ok && stderr.contains("CHAINCODE_ID: not set"), "{stderr}");
    let (ok, stderr) = run(&[
        ("CHAINCODE_ID", "tom"),
        ("CHAINCODE_SERVER_ADDRESS", "127.0.0.1:0"),
    ]);
    assert!(!ok && stderr.contains("label:sha256"), "{stderr}");
    let (ok, stderr) = run(&[
        ("CHAINCODE_ID", CHAINCODE_ID),
        ("CHAINCODE_SERVER_ADDRESS", "127.0.0.1:0"),
        ("CHAINCODE_TLS_CERT", "/nonexistent/tls/server.crt"),
        ("CHAINCODE_TLS_KEY", "/nonexistent/tls/server.key"),
    ]);
    assert!(
        !ok && stderr.contains("CHAINCODE_TLS_CERT: cannot read /nonexistent/tls/server.crt"),
        "{stderr}"
    );
    // A port that is taken is reported with the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (ok, stderr) = run(&[
        ("CHAINCODE_ID", CHAINCODE_ID),
        ("CHAINCODE_SERVER_ADDRESS", &address),
    ]);
    assert!(
        !ok && stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
}

#[test]
fn version_and_help() {
    let output = Command::new(BINARY).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("tom-chaincode {}", env!("CARGO_PKG_VERSION"))
    );
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("CHAINCODE_CLIENT_CA_CERT"));
    let output = Command::new(BINARY).arg("--port=1").output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unexpected argument"));
}
