//! The contract's one error type. Every message names what is wrong: the entity, the state it
//! is in and the guard or check that failed, so that an orchestrator or auditor can act on it
//! without reading the code.

use std::fmt;

use crate::guards::GuardFailure;
use crate::ledger::LedgerError;

/// Why a transaction was rejected. The chaincode returns the message with [`ContractError::status`]
/// as the response status, so the gateway can map it to an HTTP status on either back end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The function name is not one the contract offers.
    #[error("unknown function {0:?} (see org.hyperledger.fabric:GetMetadata for the list)")]
    UnknownFunction(String),
    /// The JSON argument is missing, malformed or carries invalid values.
    #[error("{function}: invalid argument: {detail}")]
    BadArgument {
        function: &'static str,
        detail: String,
    },
    /// The creator may not call this function.
    #[error("{function}: access denied: {reason}")]
    Unauthorized {
        function: &'static str,
        reason: String,
    },
    /// A proof (certificate chain, signature, nonce) did not hold.
    #[error("{function}: {detail}")]
    InvalidProof {
        function: &'static str,
        detail: String,
    },
    /// An entity, org, contract or record the call names does not exist.
    #[error("{kind} {id} does not exist")]
    NotFound { kind: &'static str, id: String },
    /// The id is taken already.
    #[error("{kind} {id} already exists ({detail})")]
    AlreadyExists {
        kind: &'static str,
        id: String,
        detail: String,
    },
    /// A transition of the state machine was refused by its guards.
    #[error("{transition} refused: {}", Failures(.failures))]
    GuardFailed {
        transition: &'static str,
        failures: Vec<GuardFailure>,
    },
    /// The ledger underneath failed (not the caller's fault).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A stored record could not be decoded: the state was not written by this contract.
    #[error("corrupt state at key {key:?}: {detail}")]
    CorruptState { key: String, detail: String },
}

struct Failures<'a>(&'a [GuardFailure]);

impl fmt::Display for Failures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

impl ContractError {
    /// The response status a peer returns for this error (Fabric treats >= 400 as failure).
    /// 400 bad input, 403 not allowed / proof failed, 404 unknown id, 409 state conflict,
    /// 500 ledger failure.
    pub fn status(&self) -> u16 {
        match self {
            ContractError::UnknownFunction(_) | ContractError::BadArgument { .. } => 400,
            ContractError::Unauthorized { .. } | ContractError::InvalidProof { .. } => 403,
            ContractError::NotFound { .. } => 404,
            ContractError::AlreadyExists { .. } | ContractError::GuardFailed { .. } => 409,
            ContractError::Ledger(_) | ContractError::CorruptState { .. } => 500,
        }
    }

    pub(crate) fn bad(function: &'static str, detail: impl Into<String>) -> Self {
        ContractError::BadArgument {
            function,
            detail: detail.into(),
        }
    }

    pub(crate) fn denied(function: &'static str, reason: impl Into<String>) -> Self {
        ContractError::Unauthorized {
            function,
            reason: reason.into(),
        }
    }

    pub(crate) fn proof(function: &'static str, detail: impl Into<String>) -> Self {
        ContractError::InvalidProof {
            function,
            detail: detail.into(),
        }
    }
}
