//! PEM and DER identity parsing: `Certificate::from_pem` on the input as text, and on the input
//! as DER wrapped in a PEM block; then everything the contract reads from a parsed certificate.
use base64::Engine;
use tom_contract::identity::Certificate;

fn exercise(pem: &str) {
    if let Ok(cert) = Certificate::from_pem(pem) {
        let _ = cert.role();
        let _ = cert.agent("Org1MSP");
        let _ = cert.check_valid_at(tom_contract::Timestamp::from_seconds(1_767_225_600));
        let _ = cert.check_issued_by(&cert);
        let _ = cert.verify(b"message", b"signature");
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data) {
            exercise(text);
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        exercise(&format!(
            "-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n"
        ));
    });
}
