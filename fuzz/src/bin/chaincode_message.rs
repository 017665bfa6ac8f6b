//! What tom-chaincode decodes from a peer: a `ChaincodeMessage`, its `ChaincodeInput` payload and
//! the signed proposal's nested headers (`tom_chaincode::proposal::decode`), in the order the
//! handler does for a TRANSACTION message.
use fabric_shim_protos::peer::{ChaincodeInput, ChaincodeMessage};
use prost::Message;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(message) = ChaincodeMessage::decode(data) else {
            return;
        };
        let _ = ChaincodeInput::decode(message.payload.as_slice());
        if let Some(signed) = message.proposal.as_ref() {
            let _ = tom_chaincode::proposal::decode(signed);
        }
    });
}
