//! What a transaction's signed proposal tells the chaincode: who signed it (MSP id and
//! certificate) and the timestamp the client put in the channel header.
//!
//! A chaincode-as-a-service process is not told the peer's MSP id or anything else about the
//! caller, so the creator comes only from here. The peer has already checked the proposal's
//! signature and the creator's membership before it sends the transaction; this module decodes,
//! it does not verify.

use fabric_shim_protos::common::{ChannelHeader, Header, SignatureHeader};
use fabric_shim_protos::msp::SerializedIdentity;
use fabric_shim_protos::peer::{Proposal, SignedProposal};
use prost::Message;
use tom_contract::{Creator, Timestamp};

/// The parts of a proposal the contract's ledger stub exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalContext {
    pub creator: Creator,
    pub timestamp: Timestamp,
    /// The channel header's transaction id (the peer sends the same id in the message).
    pub tx_id: String,
    pub channel_id: String,
}

/// Decode `SignedProposal → Proposal → Header → {ChannelHeader, SignatureHeader →
/// SerializedIdentity}`. Each failure names the layer that did not decode.
pub fn decode(signed: &SignedProposal) -> Result<ProposalContext, String> {
    let proposal = Proposal::decode(signed.proposal_bytes.as_slice())
        .map_err(|e| format!("signed proposal: proposal_bytes is not a Proposal: {e}"))?;
    let header = Header::decode(proposal.header.as_slice())
        .map_err(|e| format!("proposal header is not a Header: {e}"))?;
    let channel_header = ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(|e| format!("proposal channel_header is not a ChannelHeader: {e}"))?;
    let signature_header = SignatureHeader::decode(header.signature_header.as_slice())
        .map_err(|e| format!("proposal signature_header is not a SignatureHeader: {e}"))?;
    let identity = SerializedIdentity::decode(signature_header.creator.as_slice())
        .map_err(|e| format!("proposal creator is not a SerializedIdentity: {e}"))?;
    if identity.mspid.is_empty() {
        return Err("proposal creator has an empty MSP id".into());
    }
    let timestamp = channel_header
        .timestamp
        .ok_or_else(|| "proposal channel header has no timestamp".to_owned())?;
    if !(0..1_000_000_000).contains(&timestamp.nanos) {
        return Err(format!(
            "proposal timestamp has invalid nanos {}",
            timestamp.nanos
        ));
    }
    Ok(ProposalContext {
        creator: Creator {
            msp_id: identity.mspid,
            certificate_pem: identity.id_bytes,
        },
        timestamp: Timestamp {
            seconds: timestamp.seconds,
            nanos: timestamp.nanos,
        },
        tx_id: channel_header.tx_id,
        channel_id: channel_header.channel_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(channel_header: ChannelHeader, creator: Vec<u8>) -> SignedProposal {
        let header = Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: SignatureHeader {
                creator,
                nonce: vec![7; 24],
            }
            .encode_to_vec(),
        };
        let proposal = Proposal {
            header: header.encode_to_vec(),
            payload: vec![],
            extension: vec![],
        };
        SignedProposal {
            proposal_bytes: proposal.encode_to_vec(),
            signature: vec![1, 2, 3],
        }
    }

    #[test]
    fn creator_and_timestamp_come_from_the_headers() {
        let identity = SerializedIdentity {
            mspid: "Org1MSP".into(),
            id_bytes: b"-----BEGIN CERTIFICATE-----".to_vec(),
        };
        let channel_header = ChannelHeader {
            r#type: 3,
            channel_id: "tom".into(),
            tx_id: "abc".into(),
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_780_272_000,
                nanos: 5,
            }),
            ..Default::default()
        };
        let context = decode(&signed(channel_header, identity.encode_to_vec())).unwrap();
        assert_eq!(context.creator.msp_id, "Org1MSP");
        assert_eq!(
            context.creator.certificate_pem,
            b"-----BEGIN CERTIFICATE-----"
        );
        assert_eq!(
            context.timestamp,
            Timestamp {
                seconds: 1_780_272_000,
                nanos: 5
            }
        );
        assert_eq!(
            (context.tx_id.as_str(), context.channel_id.as_str()),
            ("abc", "tom")
        );
    }

    #[test]
    fn broken_layers_are_named() {
        let check = |signed: SignedProposal, fragment: &str| {
            let error = decode(&signed).unwrap_err();
            assert!(
                error.contains(fragment),
                "{error:?} should contain {fragment:?}"
            );
        };
        check(
            SignedProposal {
                proposal_bytes: vec![0xff, 0xff],
                signature: vec![],
            },
            "not a Proposal",
        );
        let no_time = ChannelHeader {
            r#type: 3,
            ..Default::default()
        };
        let who = SerializedIdentity {
            mspid: "Org1MSP".into(),
            id_bytes: vec![],
        }
        .encode_to_vec();
        check(signed(no_time.clone(), who), "no timestamp");
        check(
            signed(no_time.clone(), vec![0xff]),
            "not a SerializedIdentity",
        );
        check(
            signed(no_time, SerializedIdentity::default().encode_to_vec()),
            "empty MSP id",
        );
    }
}
