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
pub mod transactions;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use error::ContractError;
pub use ledger::{Creator, LedgerStub, Timestamp};

use context::Ctx;

/// The contract's name in Fabric contract-API terms (`TomContract:Fn`).
pub const CONTRACT_NAME: &str = "TomContract";
/// The metadata function every contract-API chaincode answers.
pub const METADATA_FUNCTION: &str = "org.hyperledger.fabric:GetMetadata";

/// Whether a function only reads (evaluate) or writes (submit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Submit,
    Evaluate,
}

/// A transaction the contract offers.
pub struct Function {
    pub name: &'static str,
    pub kind: Kind,
    /// Which roles may call it.
    pub roles: &'static str,
    pub description: &'static str,
}

/// Every function, in the order the metadata lists them.
pub const FUNCTIONS: &[Function] = &[
    Function { name: "RegisterOrg", kind: Kind::Submit, roles: "admin", description: "register an organisation's MSP id, CA certificates and container policy" },
    Function { name: "IdentifyDevice", kind: Kind::Submit, roles: "orchestrator", description: "device joins: certificate chain + signed nonce; writes IDENTITY and PROV-ID-create" },
    Function { name: "TerminateDevice", kind: Kind::Submit, roles: "orchestrator", description: "device leaves (guard joined(device), no containers placed); PROV-ID-delete" },
    Function { name: "IdentifyContainer", kind: Kind::Submit, roles: "orchestrator", description: "container joins with image digest (and publisher signature); PROV-ID-create" },
    Function { name: "TerminateContainer", kind: Kind::Submit, roles: "orchestrator", description: "container leaves (guard joined(container)); PROV-ID-delete" },
    Function { name: "PlaceContainer", kind: Kind::Submit, roles: "orchestrator", description: "ORCHESTRATE(deployed, location): place or re-place a container on a device" },
    Function { name: "RecordOutcome", kind: Kind::Submit, roles: "orchestrator", description: "report whether an authorised placement runs or failed, or a removal completed" },
    Function { name: "RecordDrift", kind: Kind::Submit, roles: "orchestrator", description: "record orchestrator state that differs from what the ledger authorised" },
    Function { name: "DefineContract", kind: Kind::Submit, roles: "orchestrator", description: "contract an activity to USE inputs and GENERATE outputs by a deadline; grants its credential" },
    Function { name: "EvaluateContract", kind: Kind::Submit, roles: "any registered", description: "settle a contract whose deadline passed unfulfilled as violated" },
    Function { name: "RecordData", kind: Kind::Submit, roles: "device", description: "data leaves a sensor or activity: PROV-DATA with signed hash" },
    Function { name: "ExecContract", kind: Kind::Submit, roles: "orchestrator or the activity", description: "data joins an activity under its contract (guard left(data)); PROV-ORCH" },
    Function { name: "GetEntity", kind: Kind::Evaluate, roles: "any", description: "a device, container, data item or contract by id" },
    Function { name: "GetHistory", kind: Kind::Evaluate, roles: "any", description: "every committed version of an entity or contract" },
    Function { name: "GetOrg", kind: Kind::Evaluate, roles: "any", description: "a registered organisation" },
    Function { name: "GetRecord", kind: Kind::Evaluate, roles: "any", description: "the ledger record a transaction wrote" },
    Function { name: "GetLineage", kind: Kind::Evaluate, roles: "any", description: "lineage of an entity upstream and/or downstream to a depth" },
    Function { name: "QueryRecords", kind: Kind::Evaluate, roles: "any", description: "records by agent or entity in a time window, paginated" },
    Function { name: "ListDevices", kind: Kind::Evaluate, roles: "any", description: "devices by organisation and state (joined, left, available, unavailable), paginated" },
    Function { name: "ListContainers", kind: Kind::Evaluate, roles: "any", description: "containers placed on a device, or by organisation and state, paginated" },
    Function { name: "ListContracts", kind: Kind::Evaluate, roles: "any", description: "contracts by effective state at the query time (active, fulfilled, violated), paginated" },
    Function { name: "ExportProv", kind: Kind::Evaluate, roles: "any", description: "W3C PROV-JSON document of an entity's lineage" },
];

/// Look a function up by its name, with or without the `TomContract:` prefix.
pub fn function(name: &str) -> Option<&'static Function> {
    let bare = name
        .strip_prefix(CONTRACT_NAME)
        .and_then(|n| n.strip_prefix(':'))
        .unwrap_or(name);
    FUNCTIONS.iter().find(|f| f.name == bare)
}

/// The one JSON argument, decoded by [`bounds::decode`]: no repeated keys, the request's shape,
/// every field within its bound.
fn arg<T: DeserializeOwned + bounds::Bounded>(
    function: &'static str,
    args: &[&[u8]],
) -> Result<T, ContractError> {
    let [json] = args else {
        return Err(ContractError::bad(
            function,
            format!("expects exactly 1 JSON argument, got {}", args.len()),
        ));
    };
    bounds::decode(json).map_err(|e| ContractError::bad(function, e))
}

fn respond<T: Serialize>(function: &'static str, value: &T) -> Result<Vec<u8>, ContractError> {
    serde_json::to_vec(value).map_err(|e| ContractError::CorruptState {
        key: function.to_owned(),
        detail: e.to_string(),
    })
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
    let name = f.name;
    let mut ctx = Ctx::new(stub, name);
    // Authenticate before looking at the argument: an unauthenticated caller learns nothing.
    ctx.caller()?;
    let c = &mut ctx;
    match name {
        "RegisterOrg" => respond(name, &transactions::register_org(c, arg(name, args)?)?),
        "IdentifyDevice" => respond(name, &transactions::identify_device(c, arg(name, args)?)?),
        "TerminateDevice" => respond(name, &transactions::terminate_device(c, arg(name, args)?)?),
        "IdentifyContainer" => respond(
            name,
            &transactions::identify_container(c, arg(name, args)?)?,
        ),
        "TerminateContainer" => respond(
            name,
            &transactions::terminate_container(c, arg(name, args)?)?,
        ),
        "PlaceContainer" => respond(name, &transactions::place_container(c, arg(name, args)?)?),
        "RecordOutcome" => respond(name, &transactions::record_outcome(c, arg(name, args)?)?),
        "RecordDrift" => respond(name, &transactions::record_drift(c, arg(name, args)?)?),
        "DefineContract" => respond(name, &transactions::define_contract(c, arg(name, args)?)?),
        "EvaluateContract" => respond(name, &transactions::evaluate_contract(c, arg(name, args)?)?),
        "RecordData" => respond(name, &transactions::record_data(c, arg(name, args)?)?),
        "ExecContract" => respond(name, &transactions::exec_contract(c, arg(name, args)?)?),
        "GetEntity" => respond(name, &queries::get_entity(c, arg(name, args)?)?),
        "GetHistory" => respond(name, &queries::get_history(c, arg(name, args)?)?),
        "GetOrg" => respond(name, &queries::get_org(c, arg(name, args)?)?),
        "GetRecord" => respond(name, &queries::get_record(c, arg(name, args)?)?),
        "GetLineage" => respond(name, &queries::get_lineage(c, arg(name, args)?)?),
        "QueryRecords" => respond(name, &queries::query_records(c, arg(name, args)?)?),
        "ListDevices" => respond(name, &queries::list_devices(c, arg(name, args)?)?),
        "ListContainers" => respond(name, &queries::list_containers(c, arg(name, args)?)?),
        "ListContracts" => respond(name, &queries::list_contracts(c, arg(name, args)?)?),
        "ExportProv" => {
            let lineage = queries::get_lineage(c, arg(name, args)?)?;
            respond(name, &prov::to_prov_json(&lineage))
        }
        other => Err(ContractError::UnknownFunction(other.to_owned())),
    }
}

/// The contract metadata in the shape Fabric's contract API returns from `GetMetadata`.
pub fn metadata() -> serde_json::Value {
    let transactions: Vec<serde_json::Value> = FUNCTIONS
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name,
                "tag": [match f.kind { Kind::Submit => "submit", Kind::Evaluate => "evaluate" }],
                "parameters": [{ "name": "request", "description": "JSON object", "schema": { "type": "string" } }],
                "returns": { "type": "string" },
                "description": f.description,
                "roles": f.roles,
            })
        })
        .collect();
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
        "components": { "schemas": {} },
    })
}
