//! The client side of Fabric's transaction protocol, as pure functions over the real Fabric
//! protobuf messages: building and signing proposals, deriving transaction ids, reading the
//! result out of a prepared transaction envelope and signing it, and the signed commit-status
//! and chaincode-events requests.
//!
//! Nothing here does I/O; [`super::FabricLedger`] sends what these functions build. The layout
//! follows Fabric's protos (`common/common.proto`, `peer/proposal.proto`,
//! `peer/transaction.proto`, `gateway/gateway.proto`); a peer checks every byte of it, so the
//! test Gateway server in `gateway/tests/fabric_client.rs` decodes and verifies the same way.

use prost::Message;

use super::protos::{common, gateway, msp, orderer, peer, Timestamp};
use crate::clock::{Clock, Nonce, TxIdSource};
use crate::ledger::{LedgerError, SigningIdentity};

/// Length of the random nonce in a signature header (what the official clients use).
pub const NONCE_LEN: usize = crate::clock::NONCE_LEN;

/// A signed proposal ready for `Evaluate` or `Endorse`.
#[derive(Debug, Clone)]
pub struct SignedProposal {
    pub tx_id: String,
    pub proposal: peer::SignedProposal,
}

/// The creator as Fabric serialises it: `msp.SerializedIdentity { mspid, id_bytes = cert PEM }`.
pub fn serialized_identity(identity: &SigningIdentity) -> Vec<u8> {
    msp::SerializedIdentity {
        mspid: identity.msp_id.clone(),
        id_bytes: identity.certificate_pem.clone().into_bytes(),
    }
    .encode_to_vec()
}

/// A transaction id as Fabric derives it: hex(SHA-256(nonce ‖ serialized creator)). Peers
/// recompute it and reject a proposal whose channel header carries anything else.
pub fn transaction_id(nonce: &[u8], creator: &[u8]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(nonce);
    context.update(creator);
    hex::encode(context.finish())
}

/// A fresh nonce from `source`. A failing source is [`LedgerError::Unavailable`] (nothing was
/// proposed; the API answers 503), never a zero nonce.
pub fn new_nonce(source: &dyn TxIdSource) -> Result<Nonce, LedgerError> {
    Ok(source.nonce()?)
}

/// `clock`'s now, as a protobuf timestamp.
pub fn timestamp(clock: &dyn Clock) -> Timestamp {
    let now = clock.now();
    Timestamp {
        seconds: now.seconds,
        nanos: now.nanos,
    }
}

/// Builds and signs the proposal to run `function(argument)` on `chaincode` in `channel`.
///
/// The chaincode receives `args = [function, argument]`: the contract's functions take one JSON
/// object argument each.
pub fn signed_proposal(
    identity: &SigningIdentity,
    channel: &str,
    chaincode: &str,
    function: &str,
    argument: &[u8],
    nonce: &[u8],
    timestamp: Timestamp,
) -> SignedProposal {
    signed_invocation(
        identity,
        channel,
        chaincode,
        &[function.as_bytes(), argument],
        nonce,
        timestamp,
    )
}

/// Builds and signs a proposal with arbitrary chaincode arguments (e.g. a system chaincode
/// query: `qscc` `GetChainInfo <channel>`).
pub fn signed_invocation(
    identity: &SigningIdentity,
    channel: &str,
    chaincode: &str,
    args: &[&[u8]],
    nonce: &[u8],
    timestamp: Timestamp,
) -> SignedProposal {
    let creator = serialized_identity(identity);
    let tx_id = transaction_id(nonce, &creator);
    let chaincode_id = peer::ChaincodeId {
        name: chaincode.to_owned(),
        ..Default::default()
    };
    let channel_header = common::ChannelHeader {
        r#type: common::HeaderType::EndorserTransaction as i32,
        version: 0,
        timestamp: Some(timestamp),
        channel_id: channel.to_owned(),
        tx_id: tx_id.clone(),
        epoch: 0,
        extension: peer::ChaincodeHeaderExtension {
            chaincode_id: Some(chaincode_id.clone()),
        }
        .encode_to_vec(),
        tls_cert_hash: Vec::new(),
    };
    let signature_header = common::SignatureHeader {
        creator,
        nonce: nonce.to_vec(),
    };
    let header = common::Header {
        channel_header: channel_header.encode_to_vec(),
        signature_header: signature_header.encode_to_vec(),
    };
    let invocation = peer::ChaincodeInvocationSpec {
        chaincode_spec: Some(peer::ChaincodeSpec {
            // NODE, as the official Gateway client sends it; peers take the chaincode's real
            // type from its definition, not from here.
            r#type: peer::chaincode_spec::Type::Node as i32,
            chaincode_id: Some(chaincode_id),
            input: Some(peer::ChaincodeInput {
                args: args.iter().map(|a| a.to_vec()).collect(),
                ..Default::default()
            }),
            timeout: 0,
        }),
    };
    let payload = peer::ChaincodeProposalPayload {
        input: invocation.encode_to_vec(),
        transient_map: Default::default(),
    };
    let proposal = peer::Proposal {
        header: header.encode_to_vec(),
        payload: payload.encode_to_vec(),
        extension: Vec::new(),
    };
    let proposal_bytes = proposal.encode_to_vec();
    let signature = identity.sign(&proposal_bytes);
    SignedProposal {
        tx_id,
        proposal: peer::SignedProposal {
            proposal_bytes,
            signature,
        },
    }
}

/// Reads a prepared transaction (the envelope `Endorse` returns): checks it is the transaction
/// we proposed and returns the chaincode's response payload, as the official clients do.
pub fn prepared_result(envelope: &common::Envelope, tx_id: &str) -> Result<Vec<u8>, LedgerError> {
    let bad = |what: &str| {
        LedgerError::Internal(format!(
            "the peer returned a malformed prepared transaction {tx_id}: {what}"
        ))
    };
    let payload = common::Payload::decode(envelope.payload.as_slice())
        .map_err(|e| bad(&format!("payload: {e}")))?;
    let header = payload.header.ok_or_else(|| bad("no header"))?;
    let channel_header = common::ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(|e| bad(&format!("channel header: {e}")))?;
    if channel_header.tx_id != tx_id {
        return Err(bad(&format!(
            "it carries transaction id {}",
            channel_header.tx_id
        )));
    }
    let transaction = peer::Transaction::decode(payload.data.as_slice())
        .map_err(|e| bad(&format!("transaction: {e}")))?;
    let action = transaction
        .actions
        .first()
        .ok_or_else(|| bad("no transaction action"))?;
    let action_payload = peer::ChaincodeActionPayload::decode(action.payload.as_slice())
        .map_err(|e| bad(&format!("action payload: {e}")))?;
    let endorsed = action_payload
        .action
        .ok_or_else(|| bad("no endorsed action"))?;
    let response_payload =
        peer::ProposalResponsePayload::decode(endorsed.proposal_response_payload.as_slice())
            .map_err(|e| bad(&format!("proposal response payload: {e}")))?;
    let chaincode_action = peer::ChaincodeAction::decode(response_payload.extension.as_slice())
        .map_err(|e| bad(&format!("chaincode action: {e}")))?;
    Ok(chaincode_action
        .response
        .map(|r| r.payload)
        .unwrap_or_default())
}

/// Signs a prepared transaction's payload in place (what the orderer and every validating peer
/// check against the creator in the payload's signature header).
pub fn sign_envelope(identity: &SigningIdentity, envelope: &mut common::Envelope) {
    envelope.signature = identity.sign(&envelope.payload);
}

/// The signed request for a transaction's commit status.
pub fn signed_commit_status_request(
    identity: &SigningIdentity,
    channel: &str,
    tx_id: &str,
) -> gateway::SignedCommitStatusRequest {
    let request = gateway::CommitStatusRequest {
        transaction_id: tx_id.to_owned(),
        channel_id: channel.to_owned(),
        identity: serialized_identity(identity),
    }
    .encode_to_vec();
    let signature = identity.sign(&request);
    gateway::SignedCommitStatusRequest { request, signature }
}

/// Where a chaincode-event stream starts: at the next block to commit, at a given block (the
/// channel height when the stream was first wanted), or just after a transaction already seen
/// (its block and id), to resume a broken stream without losing or repeating events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsFrom {
    NextCommit,
    Block(u64),
    After { block: u64, tx_id: String },
}

/// The signed request that opens a chaincode-event stream.
pub fn signed_chaincode_events_request(
    identity: &SigningIdentity,
    channel: &str,
    chaincode: &str,
    from: &EventsFrom,
) -> gateway::SignedChaincodeEventsRequest {
    let (start, after_transaction_id) = match from {
        EventsFrom::NextCommit => (
            orderer::seek_position::Type::NextCommit(orderer::SeekNextCommit {}),
            String::new(),
        ),
        EventsFrom::Block(block) => (
            orderer::seek_position::Type::Specified(orderer::SeekSpecified { number: *block }),
            String::new(),
        ),
        EventsFrom::After { block, tx_id } => (
            orderer::seek_position::Type::Specified(orderer::SeekSpecified { number: *block }),
            tx_id.clone(),
        ),
    };
    let request = gateway::ChaincodeEventsRequest {
        channel_id: channel.to_owned(),
        chaincode_id: chaincode.to_owned(),
        identity: serialized_identity(identity),
        start_position: Some(orderer::SeekPosition {
            r#type: Some(start),
        }),
        after_transaction_id,
    }
    .encode_to_vec();
    let signature = identity.sign(&request);
    gateway::SignedChaincodeEventsRequest { request, signature }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn nonces_and_timestamps_come_from_the_injected_sources() {
        use crate::clock::{CountingTxIds, FailingTxIds, ManualClock};
        let nonce = new_nonce(&CountingTxIds::default()).unwrap();
        assert_eq!(nonce[NONCE_LEN - 1], 1);
        let err = new_nonce(&FailingTxIds).unwrap_err();
        assert!(
            matches!(&err, LedgerError::Unavailable(m) if m.contains("random source failed")),
            "{err:?}"
        );
        let clock = ManualClock::new(tom_contract::Timestamp {
            seconds: 1_900_000_000,
            nanos: 5,
        });
        assert_eq!(
            timestamp(&clock),
            Timestamp {
                seconds: 1_900_000_000,
                nanos: 5
            }
        );
    }

    fn orchestrator() -> SigningIdentity {
        let id = tom_fixtures::identity("org1", "orchestrator");
        SigningIdentity::from_pem(id.msp_id, id.cert_pem, id.key_pkcs8_pem).unwrap()
    }

    fn verifying_key(identity: &SigningIdentity) -> p256::ecdsa::VerifyingKey {
        use p256::pkcs8::DecodePublicKey;
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(identity.certificate_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        p256::ecdsa::VerifyingKey::from_public_key_der(cert.public_key().raw).unwrap()
    }

    #[test]
    fn transaction_id_is_sha256_of_nonce_and_serialized_creator() {
        // Known answer: SHA-256("abc") with the input split across nonce and creator.
        assert_eq!(
            transaction_id(b"a", b"bc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn proposal_carries_every_field_a_peer_checks() {
        let identity = orchestrator();
        let nonce = [7u8; NONCE_LEN];
        let ts = Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        };
        let signed = signed_proposal(
            &identity,
            "tom",
            "tomcc",
            "GetOrg",
            br#"{"msp_id":"Org1MSP"}"#,
            &nonce,
            ts,
        );

        let proposal = peer::Proposal::decode(signed.proposal.proposal_bytes.as_slice()).unwrap();
        let header = common::Header::decode(proposal.header.as_slice()).unwrap();
        let channel_header =
            common::ChannelHeader::decode(header.channel_header.as_slice()).unwrap();
        let signature_header =
            common::SignatureHeader::decode(header.signature_header.as_slice()).unwrap();
        assert_eq!(channel_header.r#type, 3);
        assert_eq!(channel_header.channel_id, "tom");
        assert_eq!(channel_header.epoch, 0);
        assert_eq!(channel_header.timestamp, Some(ts));
        let extension =
            peer::ChaincodeHeaderExtension::decode(channel_header.extension.as_slice()).unwrap();
        assert_eq!(extension.chaincode_id.unwrap().name, "tomcc");

        let creator = msp::SerializedIdentity::decode(signature_header.creator.as_slice()).unwrap();
        assert_eq!(creator.mspid, "Org1MSP");
        assert_eq!(creator.id_bytes, identity.certificate_pem.as_bytes());
        assert_eq!(signature_header.nonce, nonce);
        assert_eq!(
            channel_header.tx_id,
            transaction_id(&nonce, &signature_header.creator)
        );
        assert_eq!(signed.tx_id, channel_header.tx_id);

        let payload = peer::ChaincodeProposalPayload::decode(proposal.payload.as_slice()).unwrap();
        let spec = peer::ChaincodeInvocationSpec::decode(payload.input.as_slice())
            .unwrap()
            .chaincode_spec
            .unwrap();
        assert_eq!(spec.chaincode_id.unwrap().name, "tomcc");
        assert_eq!(spec.r#type, peer::chaincode_spec::Type::Node as i32);
        assert_eq!(
            spec.input.unwrap().args,
            vec![b"GetOrg".to_vec(), br#"{"msp_id":"Org1MSP"}"#.to_vec()]
        );

        let signature = p256::ecdsa::Signature::from_der(&signed.proposal.signature).unwrap();
        assert!(signature.normalize_s().is_none(), "signature must be low-S");
        verifying_key(&identity)
            .verify(&signed.proposal.proposal_bytes, &signature)
            .unwrap();
    }

    #[test]
    fn prepared_result_reads_the_response_and_refuses_another_transaction() {
        let response = peer::ChaincodeAction {
            response: Some(peer::Response {
                status: 200,
                message: String::new(),
                payload: b"{\"ok\":true}".to_vec(),
            }),
            ..Default::default()
        };
        let prp = peer::ProposalResponsePayload {
            proposal_hash: vec![1],
            extension: response.encode_to_vec(),
        };
        let cap = peer::ChaincodeActionPayload {
            chaincode_proposal_payload: Vec::new(),
            action: Some(peer::ChaincodeEndorsedAction {
                proposal_response_payload: prp.encode_to_vec(),
                endorsements: vec![],
            }),
        };
        let tx = peer::Transaction {
            actions: vec![peer::TransactionAction {
                header: vec![],
                payload: cap.encode_to_vec(),
            }],
        };
        let header = common::Header {
            channel_header: common::ChannelHeader {
                tx_id: "abc".into(),
                ..Default::default()
            }
            .encode_to_vec(),
            signature_header: vec![],
        };
        let envelope = common::Envelope {
            payload: common::Payload {
                header: Some(header),
                data: tx.encode_to_vec(),
            }
            .encode_to_vec(),
            signature: vec![],
        };
        assert_eq!(prepared_result(&envelope, "abc").unwrap(), b"{\"ok\":true}");
        let error = prepared_result(&envelope, "other").unwrap_err().to_string();
        assert!(error.contains("carries transaction id abc"), "{error}");
        let garbage = common::Envelope {
            payload: vec![0xff, 0xff],
            signature: vec![],
        };
        assert!(prepared_result(&garbage, "abc")
            .unwrap_err()
            .to_string()
            .contains("malformed"));
    }

    #[test]
    fn events_request_resumes_after_the_last_seen_transaction() {
        let identity = orchestrator();
        let signed = signed_chaincode_events_request(
            &identity,
            "tom",
            "tomcc",
            &EventsFrom::After {
                block: 9,
                tx_id: "t1".into(),
            },
        );
        let request = gateway::ChaincodeEventsRequest::decode(signed.request.as_slice()).unwrap();
        assert_eq!(request.after_transaction_id, "t1");
        assert_eq!(
            request.start_position.unwrap().r#type,
            Some(orderer::seek_position::Type::Specified(
                orderer::SeekSpecified { number: 9 }
            ))
        );
        let signature = p256::ecdsa::Signature::from_der(&signed.signature).unwrap();
        verifying_key(&identity)
            .verify(&signed.request, &signature)
            .unwrap();
    }
}
