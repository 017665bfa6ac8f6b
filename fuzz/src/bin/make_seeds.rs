//! Writes the seed corpus (`fuzz/corpus/<target>/`) from well-formed inputs: contract requests,
//! a peer's TRANSACTION message with a signed proposal, an encoded block, fixture certificates.
//! Run once with `cargo run --release --bin make_seeds`; the corpus is committed.
use std::path::Path;

use base64::Engine;
use fabric_shim_protos::common::{ChannelHeader, Header, SignatureHeader};
use fabric_shim_protos::msp::SerializedIdentity;
use fabric_shim_protos::peer::{ChaincodeInput, ChaincodeMessage, Proposal, SignedProposal};
use prost::Message;
use tom_contract::FUNCTIONS;
use tom_fuzz::codec::RawBlock;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let index = |name: &str| FUNCTIONS.iter().position(|f| f.name == name).unwrap() as u8;
    let cert = tom_fixtures::identity("org1", "edge-node-1").cert_pem;
    let requests = [
        ("GetEntity", 2, serde_json::json!({ "id": "edge-1" })),
        ("GetRecord", 2, serde_json::json!({ "id": "setup0" })),
        (
            "QueryRecords",
            2,
            serde_json::json!({ "agent": "Org1MSP/admin", "page_size": 10 }),
        ),
        (
            "GetLineage",
            2,
            serde_json::json!({ "id": "d1", "direction": "both", "depth": 3 }),
        ),
        (
            "RecordDrift",
            1,
            serde_json::json!({ "service": "s", "description": "d", "action_taken": "removed" }),
        ),
        (
            "IdentifyContainer",
            1,
            serde_json::json!({ "container_id": "c1", "org": "Org1MSP", "image": "i:1", "digest": format!("sha256:{}", "a".repeat(64)) }),
        ),
        (
            "IdentifyDevice",
            1,
            serde_json::json!({ "device_id": "edge-1", "org": "Org1MSP", "kind": "sensor", "certificate": cert, "nonce": "n-1", "proof": "MEUCIQ==" }),
        ),
        (
            "DefineContract",
            1,
            serde_json::json!({ "contract_id": "k1", "contractor": "c1", "uses": [{ "kind": "speed" }], "deadline": "2030-01-01T00:00:00Z" }),
        ),
        (
            "RegisterOrg",
            0,
            serde_json::json!({ "msp_id": "Org1MSP", "ca_certificates": [tom_fixtures::org("org1").ca_cert_pem] }),
        ),
        (
            "TerminateDevice",
            1,
            serde_json::json!({ "id": "edge-1", "reason": "r" }),
        ),
    ];
    for (function, who, arg) in requests {
        let mut bytes = vec![index(function), who];
        bytes.extend(serde_json::to_vec(&arg).unwrap());
        write("contract_invoke", function, &bytes);
    }

    let creator = SerializedIdentity {
        mspid: "Org1MSP".into(),
        id_bytes: cert.as_bytes().to_vec(),
    };
    let header = Header {
        channel_header: ChannelHeader {
            r#type: 3,
            channel_id: "tom".into(),
            tx_id: "ab".repeat(32),
            timestamp: Some(prost_types_timestamp()),
            ..Default::default()
        }
        .encode_to_vec(),
        signature_header: SignatureHeader {
            creator: creator.encode_to_vec(),
            nonce: vec![1; 24],
        }
        .encode_to_vec(),
    };
    let proposal = Proposal {
        header: header.encode_to_vec(),
        payload: vec![],
        extension: vec![],
    };
    let input = ChaincodeInput {
        args: vec![b"GetEntity".to_vec(), br#"{"id":"edge-1"}"#.to_vec()],
        ..Default::default()
    };
    let message = ChaincodeMessage {
        r#type: 7,
        txid: "ab".repeat(32),
        channel_id: "tom".into(),
        payload: input.encode_to_vec(),
        proposal: Some(SignedProposal {
            proposal_bytes: proposal.encode_to_vec(),
            signature: vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
        }),
        ..Default::default()
    };
    write("chaincode_message", "transaction", &message.encode_to_vec());
    write("chaincode_message", "empty", b"");

    let block = RawBlock::encode(
        b"TOMH\x00\x00\x00\x01",
        &[b"TOMT\x00\x00\x00\x00".to_vec()],
        &[1; 64],
    );
    write("block_codec", "block", &block);
    write(
        "block_codec",
        "header",
        b"TOMH\x00\x00\x00\x00\x00\x00\x00\x01",
    );
    write("block_codec", "proposal", b"TOMP\x00\x00\x00\x01");

    write("certificate", "pem", cert.as_bytes());
    let der_b64: String = cert.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(der_b64)
        .unwrap();
    write("certificate", "der", &der);
    write(
        "certificate",
        "ca",
        tom_fixtures::org("org2").ca_cert_pem.as_bytes(),
    );
}

fn prost_types_timestamp() -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: 1_767_225_600,
        nanos: 0,
    }
}
