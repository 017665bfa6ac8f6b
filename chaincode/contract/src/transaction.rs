//! One typed seam: each transaction's request type carries its name, whether it writes, the
//! record it writes, who may call it, its response type and its body, as Fabric's contract API
//! derives dispatch and metadata from the transaction functions themselves.
//!
//! [`crate::invoke`], [`crate::FUNCTIONS`], [`crate::function`] and [`crate::metadata`] (the
//! answer to `GetMetadata`, with JSON Schemas of every request and response) all come from the
//! one registry list in `lib.rs`, so a transaction's name, roles and shapes are written once.
//! Callers outside the contract (the gateway's submit calls and its OpenAPI document) use the
//! same trait: `T::NAME` to address a transaction and [`transaction_schemas`] for its schemas.
//!
//! Nothing here does I/O: schemas are computed from the types' serde attributes.

use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bounds::Bounded;
use crate::context::Ctx;
use crate::error::ContractError;
use crate::model::{RecordKind, Role};

/// Whether a function only reads (evaluate) or writes (submit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Submit,
    Evaluate,
}

impl Kind {
    /// The tag Fabric's contract metadata gives the transaction.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Kind::Submit => "submit",
            Kind::Evaluate => "evaluate",
        }
    }
}

/// Who may call a transaction. Checked by [`Ctx::authorise`], described in the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callers {
    /// Anyone whose certificate is readable and valid at the transaction time (reads).
    Anyone,
    /// An admin (`tom.role=admin`) of the organisation being registered, which need not be
    /// registered yet; the transaction itself checks the admin's certificate chains to its CA.
    Admin,
    /// A member with one of these roles of a registered organisation whose CA issued the
    /// caller's certificate.
    Members(&'static [Role]),
    /// A member of a registered organisation, whatever its role.
    AnyMember,
    /// An orchestrator, or the contracted activity itself (its own identity, role device); the
    /// transaction checks that a device-role caller is the activity.
    OrchestratorOrActivity,
}

impl Callers {
    /// The roles that may call, in the order refusals list them (empty: any role, or none).
    pub const fn roles(&self) -> &'static [Role] {
        match self {
            Callers::Anyone => &[],
            Callers::Admin => &[Role::Admin],
            Callers::Members(roles) => roles,
            Callers::AnyMember => &[Role::Orchestrator, Role::Auditor, Role::Device, Role::Admin],
            Callers::OrchestratorOrActivity => &[Role::Orchestrator, Role::Device],
        }
    }
}

impl fmt::Display for Callers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Callers::Anyone => f.write_str("any"),
            Callers::Admin => f.write_str("admin"),
            Callers::AnyMember => f.write_str("any registered"),
            Callers::OrchestratorOrActivity => f.write_str("orchestrator or the activity"),
            Callers::Members(roles) => {
                let names: Vec<&str> = roles.iter().map(Role::as_str).collect();
                f.write_str(&names.join(" or "))
            }
        }
    }
}

/// A transaction the contract offers, implemented by its request type.
pub trait Transaction: Serialize + DeserializeOwned + JsonSchema + Bounded + Sized {
    /// The function name (`TomContract:<NAME>` also reaches it).
    const NAME: &'static str;
    const KIND: Kind;
    /// The ledger record a submit writes (and the chaincode event it emits); `None` for reads.
    const RECORD: Option<RecordKind>;
    /// Who may call it.
    const CALLERS: Callers;
    /// One line for the metadata.
    const DESCRIPTION: &'static str;
    /// What it answers.
    type Response: Serialize + DeserializeOwned + JsonSchema;

    /// Run the transaction on `ctx`'s ledger.
    fn execute(self, ctx: &mut Ctx) -> Result<Self::Response, ContractError>;

    /// The request's JSON Schema (a reference into `generator`'s definitions when named).
    fn request_schema(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<Self>()
    }

    /// The response's JSON Schema (a reference into `generator`'s definitions when named).
    fn response_schema(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<Self::Response>()
    }
}

type Run = fn(&mut Ctx, &[&[u8]]) -> Result<Vec<u8>, ContractError>;
type SchemaFor = fn(&mut SchemaGenerator) -> Schema;

/// A transaction the contract offers, as the registry lists it.
pub struct Function {
    pub name: &'static str,
    pub kind: Kind,
    /// Which callers may call it.
    pub roles: Callers,
    /// The ledger record it writes, if it writes.
    pub record: Option<RecordKind>,
    pub description: &'static str,
    pub request_schema: SchemaFor,
    pub response_schema: SchemaFor,
    run: Run,
}

impl Function {
    /// The registry entry of `T`. A submit writes a record and a read writes none (checked when
    /// the registry is compiled).
    pub const fn of<T: Transaction>() -> Function {
        assert!(
            matches!(T::KIND, Kind::Submit) == T::RECORD.is_some(),
            "a submit transaction writes one record and an evaluate transaction none"
        );
        Function {
            name: T::NAME,
            kind: T::KIND,
            roles: T::CALLERS,
            record: T::RECORD,
            description: T::DESCRIPTION,
            request_schema: T::request_schema,
            response_schema: T::response_schema,
            run: run::<T>,
        }
    }

    /// Decode the argument, run the transaction and encode its response.
    pub(crate) fn run(&self, ctx: &mut Ctx, args: &[&[u8]]) -> Result<Vec<u8>, ContractError> {
        (self.run)(ctx, args)
    }
}

fn run<T: Transaction>(ctx: &mut Ctx, args: &[&[u8]]) -> Result<Vec<u8>, ContractError> {
    let request: T = arg(T::NAME, args)?;
    let response = request.execute(ctx)?;
    respond(T::NAME, &response)
}

/// The one JSON argument, decoded by [`crate::bounds::decode`]: no repeated keys, the
/// request's shape, every field within its bound.
fn arg<T: DeserializeOwned + Bounded>(
    function: &'static str,
    args: &[&[u8]],
) -> Result<T, ContractError> {
    let [json] = args else {
        return Err(ContractError::bad(
            function,
            format!("expects exactly 1 JSON argument, got {}", args.len()),
        ));
    };
    crate::bounds::decode(json).map_err(|e| ContractError::bad(function, e))
}

pub(crate) fn respond<T: Serialize + ?Sized>(
    function: &'static str,
    value: &T,
) -> Result<Vec<u8>, ContractError> {
    serde_json::to_vec(value).map_err(|e| ContractError::CorruptState {
        key: function.to_owned(),
        detail: e.to_string(),
    })
}

/// The settings the contract's schemas are generated with: JSON Schema 2020-12 (what OpenAPI
/// 3.1 embeds), named types under `#/components/schemas/` as in Fabric's contract metadata and
/// in OpenAPI documents, and the shapes the types *decode* from (a defaulted field is optional).
pub fn schema_generator() -> SchemaGenerator {
    schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator()
}

/// One transaction's name, kind and schemas.
pub struct TransactionSchema {
    pub name: &'static str,
    pub kind: Kind,
    pub description: &'static str,
    pub request: Schema,
    pub response: Schema,
}

/// Every transaction's request and response schema, in registry order. Named types are
/// references into `generator`'s definitions (take them with
/// [`SchemaGenerator::take_definitions`] for the document's `components.schemas`).
pub fn transaction_schemas(generator: &mut SchemaGenerator) -> Vec<TransactionSchema> {
    crate::FUNCTIONS
        .iter()
        .map(|f| TransactionSchema {
            name: f.name,
            kind: f.kind,
            description: f.description,
            request: (f.request_schema)(generator),
            response: (f.response_schema)(generator),
        })
        .collect()
}
