//! Throw-away TLS material for tests, made with rcgen at test time: a CA, a server certificate
//! for `localhost`/`127.0.0.1`, and client certificates from that CA and from a stranger CA.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct Material {
    pub ca_pem: String,
    pub server: Pair,
    pub client: Pair,
    /// A client certificate from a CA the server does not trust.
    pub stranger: Pair,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Pair {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("peer0.org1"),
    );
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

pub fn material() -> Material {
    let (ca_pem, issuer) = ca("tom chaincode test ca");
    let (_, stranger_ca) = ca("someone else's ca");
    Material {
        ca_pem,
        server: leaf(
            &issuer,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        client: leaf(
            &issuer,
            &["peer0.org1.example.com"],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
        stranger: leaf(
            &stranger_ca,
            &["intruder.example.com"],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    }
}

/// A TLS channel to `port` that trusts `ca_pem` and presents `client` if given. Connection
/// errors are returned, not panicked on: tests assert on refusals.
pub async fn channel(port: u16, ca_pem: &str, client: Option<&Pair>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some(client) = client {
        tls = tls.identity(Identity::from_pem(&client.cert_pem, &client.key_pem));
    }
    let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?;
    endpoint.connect().await.map_err(|e| format!("{e:?}"))
}

/// Whether a peer gets as far as the chaincode's REGISTER over `channel`.
pub async fn reaches_register(channel: Result<Channel, String>) -> Result<(), String> {
    let channel = channel?;
    let mut stream = super::RawStream::open(channel)
        .await
        .map_err(|s| s.to_string())?;
    match tokio::time::timeout(super::WAIT, stream.from_chaincode.message()).await {
        Ok(Ok(Some(message)))
            if message.r#type
                == fabric_shim_protos::peer::chaincode_message::Type::Register as i32 =>
        {
            Ok(())
        }
        Ok(Ok(other)) => Err(format!("unexpected first message {other:?}")),
        Ok(Err(status)) => Err(status.to_string()),
        Err(_) => Err("timed out".into()),
    }
}
