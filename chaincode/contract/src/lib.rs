//! TOM's smart contract: the paper's state machine for trusted orchestration (Table II),
//! identity proofs, W3C PROV records and the audit queries over them.
//!
//! The contract is a pure function of the ledger it is given: [`invoke`] takes a [`LedgerStub`]
//! (Fabric's chaincode stub, reduced to what the contract needs), the function name and its JSON
//! argument, and returns the response bytes or a [`ContractError`]. It never does I/O, never reads
//! a clock (only the transaction timestamp), never uses randomness, and never iterates a hash
//! map, so every endorsing peer computes byte-identical read-write sets and responses. It must
//! never depend on tokio, tonic, bollard or any I/O crate (CI checks this).
//!
//! The same code runs on Fabric peers (through `tom-chaincode`, the chaincode-as-a-service
//! server), in the gateway's embedded ledger, and in tests on [`memory::MemoryLedger`].

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bounds;
pub mod claims;
pub mod context;
pub mod error;
pub mod guards;
pub mod identity;
pub mod ids;
pub mod keys;
pub mod ledger;
pub mod memory;
pub mod model;
pub mod prov;
pub mod queries;
pub mod requests;
pub mod simulation;
pub mod time;

pub mod transaction;
pub mod transactions;

pub use error::ContractError;
pub use ledger::{Creator, LedgerStub, Timestamp};
pub use transaction::{Callers, Function, Kind, Transaction};

use context::Ctx;
use transaction::respond;

/// The contract's name in Fabric contract-API terms (`TomContract:Fn`).
pub const CONTRACT_NAME: &str = "TomContract";
/// The metadata function every contract-API chaincode answers.
pub const METADATA_FUNCTION: &str = "org.hyperledger.fabric:GetMetadata";

/// The registry: every transaction, in the order the metadata lists them. Dispatch, metadata
/// and schemas all come from this one list (see [`transaction`]).
pub const FUNCTIONS: &[Function] = &[
    Function::of::<requests::RegisterOrg>(),
    Function::of::<requests::IdentifyDevice>(),
    Function::of::<requests::TerminateDevice>(),
    Function::of::<requests::IdentifyContainer>(),
    Function::of::<requests::TerminateContainer>(),
    Function::of::<requests::PlaceContainer>(),
    Function::of::<requests::RecordOutcome>(),
    Function::of::<requests::RecordDrift>(),
    Function::of::<requests::DefineContract>(),
    Function::of::<requests::EvaluateContract>(),
    Function::of::<requests::RecordData>(),
    Function::of::<requests::ExecContract>(),
    Function::of::<requests::GetEntity>(),
    Function::of::<requests::GetHistory>(),
    Function::of::<requests::GetOrg>(),
    Function::of::<requests::GetRecord>(),
    Function::of::<requests::GetLineage>(),
    Function::of::<requests::RecordsQuery>(),
    Function::of::<requests::DevicesQuery>(),
    Function::of::<requests::ContainersQuery>(),
    Function::of::<requests::ContractsQuery>(),
    Function::of::<requests::ExportProv>(),
];

/// Look a function up by its name, with or without the `TomContract:` prefix.
pub fn function(name: &str) -> Option<&'static Function> {
    let bare = name
        .strip_prefix(CONTRACT_NAME)
        .and_then(|n| n.strip_prefix(':'))
        .unwrap_or(name);
    FUNCTIONS.iter().find(|f| f.name == bare)
}

/// Run one transaction: `function` (`Fn` or `TomContract:Fn`) with its JSON argument.
pub fn invoke(
    stub: &mut dyn LedgerStub,
    function_name: &str,
    args: &[&[u8]],
) -> Result<Vec<u8>, ContractError> {
    if function_name == METADATA_FUNCTION {
        return respond(METADATA_FUNCTION, &metadata());
    }
    let Some(f) = function(function_name) else {
        return Err(ContractError::UnknownFunction(function_name.to_owned()));
    };
    let mut ctx = Ctx::new(stub, f.name);
    // Authenticate before looking at the argument: an unauthenticated caller learns nothing.
    ctx.caller()?;
    f.run(&mut ctx, args)
}

/// The contract metadata in the shape Fabric's contract API returns from `GetMetadata`: each
/// transaction's parameter and return value carry JSON Schemas whose named types are listed
/// once under `components.schemas`.
pub fn metadata() -> serde_json::Value {
    let mut generator = transaction::schema_generator();
    let transactions: Vec<serde_json::Value> = FUNCTIONS
        .iter()
        .map(|f| {
            let request = (f.request_schema)(&mut generator).to_value();
            let returns = (f.response_schema)(&mut generator).to_value();
            serde_json::json!({
                "name": f.name,
                "tag": [f.kind.as_str()],
                "parameters": [{ "name": "request", "description": "the transaction's JSON argument", "schema": request }],
                "returns": returns,
                "description": f.description,
                "roles": f.roles.to_string(),
            })
        })
        .collect();
    let schemas = serde_json::Value::Object(generator.take_definitions(true));
    serde_json::json!({
        "$schema": "https://hyperledger.github.io/fabric-chaincode-node/main/api/contract-schema.json",
        "info": { "title": "TOM: Trusted Orchestration Manager", "version": env!("CARGO_PKG_VERSION") },
        "contracts": {
            CONTRACT_NAME: {
                "name": CONTRACT_NAME,
                "info": { "title": CONTRACT_NAME, "version": env!("CARGO_PKG_VERSION") },
                "transactions": transactions,
                "default": true,
            }
        },
        "components": { "schemas": schemas },
    })
}
