//! Fabric evidence (`"kind": "fabric"`): placeholder until the Fabric proof lands.

use serde::{Deserialize, Serialize};

use super::verify::{fail, CommittedTx, Failure, Options, Verified};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricProof {
    pub channel: String,
}

pub(crate) fn verify_proof(
    _proof: &FabricProof,
    _options: &Options,
) -> Result<(Vec<CommittedTx>, Verified), Failure> {
    Err(fail("format", "Fabric bundles are not supported yet"))
}
