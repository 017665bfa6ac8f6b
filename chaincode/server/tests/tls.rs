//! TLS as Fabric's CCaaS uses it: the peer dials the chaincode over TLS, checking the server
//! certificate against `root_cert` from `connection.json`; with `client_auth_required` the
//! chaincode demands the peer's client certificate, issued by `CHAINCODE_CLIENT_CA_CERT`.

mod common;

use common::scenario::Network;
use common::tls::{channel, material, reaches_register};
use common::*;
use serde_json::json;
use tom_chaincode::config::TlsConfig;

#[tokio::test]
async fn server_tls_without_client_auth() {
    let tls = material();
    let server = InProcess::start_with(|config| {
        config.tls = Some(TlsConfig {
            cert_pem: tls.server.cert_pem.clone().into_bytes(),
            key_pem: tls.server.key_pem.clone().into_bytes(),
            client_ca_pem: None,
        });
    })
    .await;
    let port = server.address.port();

    // A peer that trusts the CA is served, with or without a client certificate.
    reaches_register(channel(port, &tls.ca_pem, None).await)
        .await
        .unwrap();
    let peer = Peer::connect(
        "peer0.org1",
        channel(port, &tls.ca_pem, Some(&tls.client)).await.unwrap(),
    )
    .await;
    let network = Network::new(vec![peer]);
    network.register_org("org1").await.unwrap();
    assert_eq!(
        network
            .query(id("org1", "auditor"), "GetOrg", json!({ "id": "Org1MSP" }))
            .await
            .unwrap()["msp_id"],
        "Org1MSP"
    );

    // A peer that trusts another CA refuses the server; plain gRPC gets nowhere.
    let other_ca = material().ca_pem;
    assert!(
        reaches_register(channel(port, &other_ca, None).await)
            .await
            .is_err(),
        "server cert must not verify against another CA"
    );
    let plain = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .map_err(|e| e.to_string());
    assert!(
        reaches_register(plain).await.is_err(),
        "plain gRPC must not reach a TLS chaincode"
    );
}

#[tokio::test]
async fn client_auth_admits_only_peers_with_a_certificate_from_the_client_ca() {
    let tls = material();
    let server = InProcess::start_with(|config| {
        config.tls = Some(TlsConfig {
            cert_pem: tls.server.cert_pem.clone().into_bytes(),
            key_pem: tls.server.key_pem.clone().into_bytes(),
            client_ca_pem: Some(tls.ca_pem.clone().into_bytes()),
        });
    })
    .await;
    let port = server.address.port();

    let anonymous = reaches_register(channel(port, &tls.ca_pem, None).await).await;
    assert!(
        anonymous.is_err(),
        "a peer without a client certificate must be refused"
    );
    let stranger = reaches_register(channel(port, &tls.ca_pem, Some(&tls.stranger)).await).await;
    assert!(
        stranger.is_err(),
        "a client certificate from another CA must be refused"
    );

    let peer = Peer::connect(
        "peer0.org1",
        channel(port, &tls.ca_pem, Some(&tls.client)).await.unwrap(),
    )
    .await;
    let network = Network::new(vec![peer]);
    network.register_org("org1").await.unwrap();
    network.register_org("org2").await.unwrap();
}
