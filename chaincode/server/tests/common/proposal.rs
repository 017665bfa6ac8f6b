//! Real Fabric proposals, built as a client SDK builds them: a `SignedProposal` over a
//! `Proposal{Header{ChannelHeader, SignatureHeader{creator, nonce}}, ChaincodeProposalPayload}`,
//! signed with the fixture identity's key, with Fabric's transaction id
//! `hex(sha256(nonce ‖ serialized creator))`.

use std::sync::atomic::{AtomicI64, Ordering};

use fabric_shim_protos::common::{ChannelHeader, Header, HeaderType, SignatureHeader};
use fabric_shim_protos::msp::SerializedIdentity;
use fabric_shim_protos::peer::{
    chaincode_spec, ChaincodeHeaderExtension, ChaincodeId, ChaincodeInput, ChaincodeInvocationSpec,
    ChaincodeProposalPayload, ChaincodeSpec, Proposal, SignedProposal,
};
use prost::Message;
use ring::rand::SecureRandom;
use tom_contract::{Creator, Timestamp};
use tom_fixtures::Identity;

use super::CHANNEL;

/// A signed proposal and what a peer knows about it.
#[derive(Clone, Debug)]
pub struct SignedTx {
    pub tx_id: String,
    pub channel_id: String,
    pub timestamp: Timestamp,
    pub creator: Creator,
    pub input: ChaincodeInput,
    pub signed: SignedProposal,
}

/// Hands out increasing transaction timestamps (one second apart) from 2026-06-01T00:00:00Z,
/// inside the fixture certificates' validity.
pub struct TxClock {
    seconds: AtomicI64,
}

impl Default for TxClock {
    fn default() -> Self {
        TxClock {
            seconds: AtomicI64::new(1_780_272_000),
        }
    }
}

impl TxClock {
    pub fn now(&self) -> Timestamp {
        Timestamp::from_seconds(self.seconds.load(Ordering::SeqCst))
    }

    pub fn advance(&self, seconds: i64) {
        self.seconds.fetch_add(seconds, Ordering::SeqCst);
    }

    /// A proposal for `function` with `args`, signed by `who`, at the next second.
    pub fn proposal(&self, who: &Identity, function: &str, args: &[Vec<u8>]) -> SignedTx {
        let seconds = self.seconds.fetch_add(1, Ordering::SeqCst) + 1;
        let mut all = vec![function.as_bytes().to_vec()];
        all.extend(args.iter().cloned());
        build(who, CHANNEL, "tom", all, Timestamp::from_seconds(seconds))
    }
}

/// Build and sign a proposal invoking chaincode `chaincode` with `args` (`args[0]` = function).
pub fn build(
    who: &Identity,
    channel: &str,
    chaincode: &str,
    args: Vec<Vec<u8>>,
    timestamp: Timestamp,
) -> SignedTx {
    let creator = SerializedIdentity {
        mspid: who.msp_id.to_owned(),
        id_bytes: who.cert_pem.as_bytes().to_vec(),
    }
    .encode_to_vec();
    let mut nonce = [0u8; 24];
    ring::rand::SystemRandom::new().fill(&mut nonce).unwrap();
    let tx_id = hex::encode(super::sha256(
        &[nonce.as_slice(), creator.as_slice()].concat(),
    ));
    let chaincode_id = ChaincodeId {
        name: chaincode.to_owned(),
        ..Default::default()
    };

    let channel_header = ChannelHeader {
        r#type: HeaderType::EndorserTransaction as i32,
        version: 0,
        timestamp: Some(prost_types::Timestamp {
            seconds: timestamp.seconds,
            nanos: timestamp.nanos,
        }),
        channel_id: channel.to_owned(),
        tx_id: tx_id.clone(),
        epoch: 0,
        extension: ChaincodeHeaderExtension {
            chaincode_id: Some(chaincode_id.clone()),
        }
        .encode_to_vec(),
        ..Default::default()
    };
    let header = Header {
        channel_header: channel_header.encode_to_vec(),
        signature_header: SignatureHeader {
            creator,
            nonce: nonce.to_vec(),
        }
        .encode_to_vec(),
    };
    let input = ChaincodeInput {
        args,
        ..Default::default()
    };
    let invocation = ChaincodeInvocationSpec {
        chaincode_spec: Some(ChaincodeSpec {
            r#type: chaincode_spec::Type::Golang as i32,
            chaincode_id: Some(chaincode_id),
            input: Some(input.clone()),
            timeout: 0,
        }),
    };
    let payload = ChaincodeProposalPayload {
        input: invocation.encode_to_vec(),
        ..Default::default()
    };
    let proposal = Proposal {
        header: header.encode_to_vec(),
        payload: payload.encode_to_vec(),
        extension: Vec::new(),
    };
    let proposal_bytes = proposal.encode_to_vec();
    let signature = who.sign(&proposal_bytes);
    SignedTx {
        tx_id,
        channel_id: channel.to_owned(),
        timestamp,
        creator: Creator {
            msp_id: who.msp_id.to_owned(),
            certificate_pem: who.cert_pem.as_bytes().to_vec(),
        },
        input,
        signed: SignedProposal {
            proposal_bytes,
            signature,
        },
    }
}
