//! The REST API orchestrators, devices and auditors call.
//!
//! Every write route becomes exactly one ledger transaction, signed as the caller's ledger
//! identity (see [`crate::identities`]); placements and container removals go through the
//! [`actions::ContainerActions`] seam so an orchestrator can carry them out. Reads are ledger
//! queries (evaluate), answered with the contract's JSON unchanged.
//!
//! [`ROUTES`] is the single list of routes: the router is built from it and so is the OpenAPI
//! document at `/openapi.json`, so the two cannot disagree. Handlers never hold a lock across an
//! await and never write anything themselves: the ledger is the only state.

pub mod actions;
pub mod audit_page;
pub mod error;
pub mod events;
pub mod evidence;
pub mod extract;
pub mod handlers;
pub mod metrics;
pub mod openapi;
pub mod state;

use axum::routing::{delete, get, post, MethodRouter};

use tom_contract::ids::{self, Grammar, AGENT, ID, TX_ID};
use tom_contract::requests;
use tom_contract::transaction::Transaction;

use state::AppState;

/// Largest request body accepted (bytes); larger ones are answered 413. The largest valid body
/// (an organisation with its CA certificates and publishers, see `tom_contract::ids`) is far
/// smaller.
pub const BODY_LIMIT: usize = 256 * 1024;

/// What a route does, one variant per route so the router and the spec are matched
/// exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    RegisterOrg,
    GetOrg,
    IdentifyDevice,
    TerminateDevice,
    IdentifyContainer,
    TerminateContainer,
    PlaceContainer,
    RecordOutcome,
    RecordDrift,
    DefineContract,
    EvaluateContract,
    RecordData,
    ExecContract,
    GetEntity,
    GetHistory,
    GetLineage,
    ExportProv,
    QueryRecords,
    ListDevices,
    ListContainers,
    ListContracts,
    GetRecord,
    GetEvidence,
    Events,
    SwarmUnauthorised,
    Health,
    Ready,
    Metrics,
    OpenApi,
    AuditPage,
    AuditTx,
    AuditEvidence,
    AuditLogin,
    AuditLogout,
    AuditStyle,
}

/// What a parameter's value must be: checked by the extractors before any ledger call and
/// stated in the spec (`pattern`/`maxLength`/`minimum`/`maximum`).
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// Checked elsewhere (an enumeration in `values`).
    Values,
    /// One of the id grammars of `tom_contract::ids`.
    Grammar(&'static Grammar),
    /// Free text of at most this many bytes, no control characters.
    Text(usize),
    /// An opaque string of at most this many bytes (bookmarks, timestamps the contract parses).
    MaxLen(usize),
    /// An integer in `[min, max]`.
    Range(u32, u32),
    /// An RFC 3339 timestamp (the contract parses it).
    Timestamp,
    /// A comma-separated list of record kinds (`/v1/events`).
    Kinds,
    /// An event id, `<block>.<tx_id>` (`/v1/events`).
    EventId,
}

/// A path or query parameter, for the spec.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub in_path: bool,
    pub required: bool,
    /// JSON schema type: `string` or `integer`.
    pub kind: &'static str,
    pub values: &'static [&'static str],
    pub description: &'static str,
    pub rule: Rule,
}

impl Param {
    /// `Ok` or a message naming the parameter and its rule.
    pub fn check(&self, value: &str) -> Result<(), String> {
        let name = self.name;
        match self.rule {
            Rule::Values => Ok(()),
            Rule::Grammar(grammar) => grammar.check(name, value),
            Rule::Text(max) => ids::check_text(name, value, max),
            Rule::MaxLen(max) if value.len() > max => Err(format!(
                "{name} is {} bytes; at most {max} are allowed",
                value.len()
            )),
            Rule::MaxLen(_) => Ok(()),
            Rule::Timestamp if value.len() > ids::MAX_TIMESTAMP => Err(format!(
                "{name} is {} bytes; an RFC 3339 timestamp has at most {}",
                value.len(),
                ids::MAX_TIMESTAMP
            )),
            Rule::Timestamp | Rule::Kinds => Ok(()),
            Rule::EventId => events::parse_event_id(value)
                .map(|_| ())
                .map_err(|_| format!("{name} {} must be <block>.<tx_id>", ids::shown(value))),
            Rule::Range(min, max) => match value.parse::<u32>() {
                Ok(n) if (min..=max).contains(&n) => Ok(()),
                _ => Err(format!(
                    "{name} {} must be an integer from {min} to {max}",
                    ids::shown(value)
                )),
            },
        }
    }
}

const fn path(name: &'static str, grammar: &'static Grammar, description: &'static str) -> Param {
    Param {
        name,
        in_path: true,
        required: true,
        kind: "string",
        values: &[],
        description,
        rule: Rule::Grammar(grammar),
    }
}

const fn query(name: &'static str, rule: Rule, description: &'static str) -> Param {
    Param {
        name,
        in_path: false,
        required: false,
        kind: match rule {
            Rule::Range(..) => "integer",
            _ => "string",
        },
        values: &[],
        description,
        rule,
    }
}

/// What a route answers with, for the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `201`/`200` with a [`state::Committed`] body.
    Committed,
    /// `200` with the named component schema (or free-form JSON).
    Json(&'static str),
    /// `200` with the contract's answer: the schema of its function's
    /// `Transaction::Response`, derived from the type.
    Answer,
    EventStream,
    Text,
    /// `text/html` pages (the audit page); their responses come from [`audit_page::document`].
    Html,
}

/// One route: the router is built from these and so is `/openapi.json`.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub op: Op,
    /// `get`, `post` or `delete`.
    pub method: &'static str,
    /// In axum syntax, which is also OpenAPI's (`/v1/devices/{id}`).
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    /// Needs `Authorization: Bearer <token>`.
    pub auth: bool,
    /// The contract function it runs, if any.
    pub function: Option<&'static str>,
    /// The request body's component schema.
    pub body: Option<&'static str>,
    pub params: &'static [Param],
    pub reply: Reply,
}

const ENTITY_ID: Param = path("id", &ID, "device, container, data or contract id");
const REASON: Param = query(
    "reason",
    Rule::Text(ids::MAX_TEXT),
    "why it leaves (recorded)",
);
const DIRECTION: Param = Param {
    name: "direction",
    in_path: false,
    required: false,
    kind: "string",
    values: &["up", "down", "both"],
    description: "up: what it derives from; down: what derives from it (default up)",
    rule: Rule::Values,
};
const DEPTH: Param = query(
    "depth",
    Rule::Range(0, tom_contract::queries::MAX_DEPTH),
    "derivation steps to follow (default 8, at most 64)",
);

const LIMIT: Param = query(
    "limit",
    Rule::Range(1, tom_contract::queries::MAX_LINEAGE_NODES as u32),
    "at most this many nodes in the answer (default 500, at most 2000); a wider lineage is truncated and returns a bookmark",
);
const FAN_OUT: Param = query(
    "fan_out",
    Rule::Range(1, tom_contract::queries::MAX_FAN_OUT),
    "at most this many neighbours followed per node and relation kind (default 100, at most 1000)",
);
const LINEAGE_BOOKMARK: Param = query(
    "bookmark",
    Rule::MaxLen(tom_contract::queries::MAX_LINEAGE_BOOKMARK),
    "the bookmark (base64url) of a truncated answer to the same id, direction and depth: continues it",
);

const PAGE_SIZE: Param = query(
    "page_size",
    Rule::Range(1, tom_contract::queries::MAX_PAGE),
    "items per page (default 100, at most 1000)",
);
const BOOKMARK: Param = query(
    "bookmark",
    Rule::MaxLen(ids::MAX_BOOKMARK),
    "the opaque bookmark (base64url) of the previous page",
);
const fn values(
    name: &'static str,
    values: &'static [&'static str],
    description: &'static str,
) -> Param {
    Param {
        name,
        in_path: false,
        required: false,
        kind: "string",
        values,
        description,
        rule: Rule::Values,
    }
}

const fn write(
    op: Op,
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    function: &'static str,
    body: Option<&'static str>,
    summary: &'static str,
) -> Route {
    Route {
        op,
        method,
        path,
        tag,
        summary,
        auth: true,
        function: Some(function),
        body,
        params: &[],
        reply: Reply::Committed,
    }
}

const fn read(
    op: Op,
    path: &'static str,
    function: &'static str,
    params: &'static [Param],
    summary: &'static str,
) -> Route {
    Route {
        op,
        method: "get",
        path,
        tag: "audit",
        summary,
        auth: true,
        function: Some(function),
        body: None,
        params,
        reply: Reply::Answer,
    }
}

pub const ROUTES: &[Route] = &[
    write(Op::RegisterOrg, "post", "/v1/orgs", "identity", requests::RegisterOrg::NAME, Some("RegisterOrg"), "Register (or update) the caller's organisation: MSP id, CA certificates, container policy. Admin role."),
    read(Op::GetOrg, "/v1/orgs/{id}", requests::GetOrg::NAME, &[path("id", &ID, "MSP id")], "A registered organisation."),
    write(Op::IdentifyDevice, "post", "/v1/devices", "identity", requests::IdentifyDevice::NAME, Some("IdentifyDeviceBody"), "A device joins: certificate chain and signed nonce (IDENTITY + PROV-ID-create)."),
    Route { params: &[path("id", &ID, "device id"), REASON], ..write(Op::TerminateDevice, "delete", "/v1/devices/{id}", "identity", requests::TerminateDevice::NAME, None, "A device leaves (PROV-ID-delete); refused while containers are placed on it.") },
    write(Op::IdentifyContainer, "post", "/v1/containers", "identity", requests::IdentifyContainer::NAME, Some("IdentifyContainer"), "A container joins with its image digest, publisher signature and workload certificate (PROV-ID-create)."),
    Route { params: &[path("id", &ID, "container id"), REASON], ..write(Op::TerminateContainer, "delete", "/v1/containers/{id}", "orchestration", requests::TerminateContainer::NAME, None, "A container leaves (PROV-ID-delete) and, with an orchestrator, is removed.") },
    write(Op::PlaceContainer, "post", "/v1/placements", "orchestration", requests::PlaceContainer::NAME, Some("PlaceContainer"), "ORCHESTRATE(deployed, location): place a container on a device; with an orchestrator, also run it and record the outcome."),
    write(Op::RecordOutcome, "post", "/v1/outcomes", "orchestration", requests::RecordOutcome::NAME, Some("RecordOutcome"), "Report whether an authorised placement runs or failed, or a removal completed."),
    write(Op::RecordDrift, "post", "/v1/drifts", "orchestration", requests::RecordDrift::NAME, Some("RecordDrift"), "Record orchestrator state that differs from what the ledger authorised."),
    write(Op::DefineContract, "post", "/v1/contracts", "contracts", requests::DefineContract::NAME, Some("DefineContract"), "Contract an activity to USE inputs and GENERATE outputs by a deadline; grants its credential."),
    Route { params: &[path("id", &ID, "contract id")], ..write(Op::EvaluateContract, "post", "/v1/contracts/{id}/evaluate", "contracts", requests::EvaluateContract::NAME, None, "Settle a contract whose deadline passed unfulfilled as violated.") },
    write(Op::RecordData, "post", "/v1/data", "provenance", requests::RecordData::NAME, Some("RecordData"), "Data leaves a sensor or activity: PROV-DATA with the generator's signed claim (DSSE envelope over an in-toto statement binding every field and the ledger). Submitted by the generator itself or an orchestrator acting for its organisation."),
    write(Op::ExecContract, "post", "/v1/executions", "provenance", requests::ExecContract::NAME, Some("ExecContract"), "Data joins an activity under its contract (EXEC, PROV-ORCH)."),
    read(Op::GetEntity, "/v1/entities/{id}", requests::GetEntity::NAME, &[ENTITY_ID], "A device, container, data item or processing contract."),
    read(Op::GetHistory, "/v1/entities/{id}/history", requests::GetHistory::NAME, &[ENTITY_ID], "Every committed version of an entity or contract."),
    read(Op::GetLineage, "/v1/lineage/{id}", requests::GetLineage::NAME, &[ENTITY_ID, DIRECTION, DEPTH, LIMIT, FAN_OUT, LINEAGE_BOOKMARK], "Lineage of an entity: data, activities, devices, contracts and the records that link them. An answer holds at most `limit` nodes and follows at most `fan_out` neighbours per node and relation kind, so it costs what it holds; a cut answer has `truncated: true` and a `bookmark` that continues it."),
    read(Op::ExportProv, "/v1/prov/{id}", requests::ExportProv::NAME, &[ENTITY_ID, DIRECTION, DEPTH, LIMIT, FAN_OUT, LINEAGE_BOOKMARK], "The lineage as a W3C PROV-JSON document. A truncated lineage carries the entity `tom:lineage.<id>` (type `tom:PartialLineage`) with `tom:truncated` and the `tom:bookmark` that continues it."),
    read(
        Op::QueryRecords,
        "/v1/records",
        requests::RecordsQuery::NAME,
        &[
            query("agent", Rule::Grammar(&AGENT), "only this agent's records (<msp_id>/<common name>)"),
            query("entity", Rule::Grammar(&ID), "only records about this entity or contract"),
            query("from", Rule::Timestamp, "RFC 3339, inclusive"),
            query("to", Rule::Timestamp, "RFC 3339, exclusive"),
            query("page_size", Rule::Range(1, tom_contract::queries::MAX_PAGE), "records per page (default 100, at most 1000); a page also stops before 1 MiB of records and returns a bookmark"),
            BOOKMARK,
        ],
        "Ledger records by agent or entity in a time window, oldest first, paginated.",
    ),
    read(Op::ListDevices, "/v1/devices", requests::DevicesQuery::NAME, &[query("org", Rule::Grammar(&ID), "only this organisation's devices (MSP id)"), values("state", &["joined", "left", "available", "unavailable"], "only devices in this state (joined = available or unavailable)"), PAGE_SIZE, BOOKMARK], "Devices by organisation and state, ordered by state index (organisation, then id), paginated (an index scan, never a full scan)."),
    read(Op::ListContainers, "/v1/containers", requests::ContainersQuery::NAME, &[query("device", Rule::Grammar(&ID), "only the containers placed on this device (give it alone)"), query("org", Rule::Grammar(&ID), "only this organisation's containers (MSP id)"), values("state", &["joined", "left"], "only containers in this state"), PAGE_SIZE, BOOKMARK], "Containers placed on a device, or by organisation and state, ordered by id, paginated."),
    read(Op::ListContracts, "/v1/contracts", requests::ContractsQuery::NAME, &[values("state", &["active", "fulfilled", "violated"], "only contracts in this effective state at the query's time (an active contract whose deadline passed is violated, settled or not)"), PAGE_SIZE, BOOKMARK], "Processing contracts by effective state, paginated; each item carries `effective_state`."),
    read(Op::GetRecord, "/v1/transactions/{id}", requests::GetRecord::NAME, &[path("id", &TX_ID, "transaction id")], "The ledger record a transaction wrote."),
    Route { reply: Reply::Json(""), ..read(Op::GetEvidence, "/v1/evidence/{id}", requests::GetLineage::NAME, &[ENTITY_ID, DIRECTION, DEPTH], "An evidence bundle (tom-evidence v1) for the lineage: every record, the committed transactions with their creators' certificates and signatures, the block proof to the newest block and the PROV-JSON; check it offline with tom audit verify-evidence.") },
    Route { op: Op::Events, method: "get", path: "/v1/events", tag: "audit", summary: "Committed records as server-sent events (event = record kind, id = `<block>.<tx_id>`, data = the record's JSON), in commit order. Resume with `Last-Event-ID: <id>` (or `?after=<id>`): every committed event after that one is replayed first, then live ones, each exactly once. 400 when the id names no committed event.", auth: true, function: None, body: None, params: &[query("kind", Rule::Kinds, "comma-separated record kinds to stream, e.g. PROV-DATA,ORCHESTRATE (default: all)"), query("after", Rule::EventId, "resume after this event id (`<block>.<tx_id>`, as sent in an event's id); the Last-Event-ID header wins when both are sent")], reply: Reply::EventStream },
    Route { op: Op::SwarmUnauthorised, method: "get", path: "/v1/swarm/unauthorised", tag: "orchestration", summary: "Every service on the swarm that no TOM gateway authorised: services without TOM's labels or gateway-instance label (which gateways ignore by design), and TOM-labelled services that are not the placement the ledger records (wrong image, replicas, constraint, or, for this gateway's own, not the service it created). Needs an orchestrator (`tom serve --swarm`).", auth: true, function: None, body: None, params: &[], reply: Reply::Json("UnauthorisedServices") },
    Route { op: Op::Health, method: "get", path: "/healthz", tag: "service", summary: "Liveness: the process answers (no paths, no back-end detail).", auth: false, function: None, body: None, params: &[], reply: Reply::Json("Health") },
    Route { op: Op::Ready, method: "get", path: "/readyz", tag: "service", summary: "Readiness: 200 if the ledger can take transactions now (embedded: commit thread alive, storage writable), else 503 with the reason.", auth: false, function: None, body: None, params: &[], reply: Reply::Json("Ready") },
    Route { op: Op::Metrics, method: "get", path: "/metrics", tag: "service", summary: "Prometheus metrics (text format).", auth: false, function: None, body: None, params: &[], reply: Reply::Text },
    Route { op: Op::OpenApi, method: "get", path: "/openapi.json", tag: "service", summary: "This document.", auth: false, function: None, body: None, params: &[], reply: Reply::Json("") },
    Route { op: Op::AuditPage, method: "get", path: "/audit", tag: "audit page", summary: "The audit page (HTML, read-only): with `id`, the entity, its timeline (every version and record, newest first, paged), its lineage drawn as SVG, the incident report and a link to its evidence bundle; without, the search form. Signed in by the `tom_audit` cookie (POST /audit/login) or `Authorization: Bearer`; otherwise 401 with the sign-in form.", auth: true, function: None, body: None, params: &[query("id", Rule::Grammar(&ID), "the entity to show"), DIRECTION, DEPTH, query("page", Rule::Range(1, 100_000), "timeline page (25 rows each, newest first)")], reply: Reply::Html },
    Route { op: Op::AuditTx, method: "get", path: "/audit/tx/{id}", tag: "audit page", summary: "The audit page of one transaction: the record it wrote, who signed it, the entities it is about.", auth: true, function: None, body: None, params: &[path("id", &TX_ID, "transaction id")], reply: Reply::Html },
    Route { op: Op::AuditEvidence, method: "get", path: "/audit/evidence/{id}", tag: "audit page", summary: "The evidence bundle of GET /v1/evidence/{id} as a download for the signed-in auditor.", auth: true, function: None, body: None, params: &[ENTITY_ID, DIRECTION, DEPTH], reply: Reply::Html },
    Route { op: Op::AuditLogin, method: "post", path: "/audit/login", tag: "audit page", summary: "Sign in to the audit page with an API token (form field `token`): sets the HttpOnly, SameSite=Strict cookie `tom_audit` (path /audit).", auth: false, function: None, body: None, params: &[], reply: Reply::Html },
    Route { op: Op::AuditLogout, method: "post", path: "/audit/logout", tag: "audit page", summary: "Sign out of the audit page (clears the cookie).", auth: false, function: None, body: None, params: &[], reply: Reply::Html },
    Route { op: Op::AuditStyle, method: "get", path: "/audit/style.css", tag: "audit page", summary: "The audit page's stylesheet (served by the gateway: no external assets).", auth: false, function: None, body: None, params: &[], reply: Reply::Html },
];

/// The route `method path_template` serves, if any.
pub fn route(method: &str, path_template: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.path == path_template && r.method.eq_ignore_ascii_case(method))
}

/// The handler of each route.
pub(crate) fn method_router(route: &Route) -> MethodRouter<AppState> {
    use handlers as h;
    match route.op {
        Op::RegisterOrg => post(h::register_org),
        Op::GetOrg => get(h::get_org),
        Op::IdentifyDevice => post(h::identify_device),
        Op::TerminateDevice => delete(h::terminate_device),
        Op::IdentifyContainer => post(h::identify_container),
        Op::TerminateContainer => delete(h::terminate_container),
        Op::PlaceContainer => post(h::place_container),
        Op::RecordOutcome => post(h::record_outcome),
        Op::RecordDrift => post(h::record_drift),
        Op::DefineContract => post(h::define_contract),
        Op::EvaluateContract => post(h::evaluate_contract),
        Op::RecordData => post(h::record_data),
        Op::ExecContract => post(h::exec_contract),
        Op::GetEntity => get(h::get_entity),
        Op::GetHistory => get(h::get_history),
        Op::GetLineage => get(h::get_lineage),
        Op::ExportProv => get(h::export_prov),
        Op::QueryRecords => get(h::query_records),
        Op::ListDevices => get(h::list_devices),
        Op::ListContainers => get(h::list_containers),
        Op::ListContracts => get(h::list_contracts),
        Op::GetRecord => get(h::get_record),
        Op::GetEvidence => get(evidence::get_evidence),
        Op::Events => get(events::events),
        Op::SwarmUnauthorised => get(h::unauthorised_services),
        Op::Health => get(h::health),
        Op::Ready => get(h::ready),
        Op::Metrics => get(h::metrics),
        Op::OpenApi => get(h::openapi),
        Op::AuditPage => get(audit_page::audit_page),
        Op::AuditTx => get(audit_page::audit_tx),
        Op::AuditEvidence => get(audit_page::audit_evidence),
        Op::AuditLogin => post(audit_page::audit_login),
        Op::AuditLogout => post(audit_page::audit_logout),
        Op::AuditStyle => get(audit_page::audit_style),
    }
}
