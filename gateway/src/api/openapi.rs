//! The OpenAPI 3.0 document served at `/openapi.json`, built from [`super::ROUTES`] (so every
//! route the router serves is documented).
//!
//! The component schemas of the request bodies and of the contract's answers are derived from
//! the contract's own types by `schemars`: the request types (`tom_contract::requests`, with the
//! model and claim types they hold) and each transaction's `Transaction::Response` (from the
//! contract's registry, `transaction_schemas`). So the document's fields, required fields,
//! types, enumerations and nesting are what the gateway and the contract decode and answer, and
//! cannot drift from them. Why schemars rather than utoipa or
//! aide: the types live in the pure contract crate, which must not depend on a web framework
//! (`scripts/check-contract-purity.sh`); schemars depends on nothing but serde, follows the serde
//! attributes the types already carry (`rename`, `default`, `deny_unknown_fields`), and emits
//! an OpenAPI 3.0 dialect (`SchemaSettings::openapi3`); utoipa and aide would tie the contract
//! to OpenAPI and axum. The document stays OpenAPI 3.0.3, which the independent validator of
//! the tests (`scripts/setup/06-openapi-validator.sh`) and schemathesis both check.
//!
//! What a type cannot say is laid over the derived shapes here, field by field ([`rules`]): the
//! bound each field is checked against before any ledger call (`tom_contract::bounds`: the id
//! grammars, free-text and PEM byte bounds, list lengths) as `pattern`/`maxLength`/`maxItems`,
//! and the descriptions written for callers. A test checks that every rule names a field the
//! derived schema has, and another that every request example decodes into its request type
//! and is valid against its schema. Paths, responses, security and examples are written here.

use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use schemars::Schema;
use serde_json::{json, Map, Value};
use tom_contract::transaction::transaction_schemas;

use tom_contract::ids::{self, Grammar, ID, NONCE, TX_ID};
use tom_contract::requests;

use super::{Op, Reply, Rule, ROUTES};

/// A string of at most `max` bytes. (`maxLength` counts characters; for the ASCII grammars the
/// two agree, for free text the server's byte bound is the stricter and is stated in words.)
fn string_max(description: &str, max: usize) -> Value {
    json!({ "type": "string", "description": description, "maxLength": max })
}

/// Free text: 1 to `max` bytes, no control characters or noncharacters.
fn text(description: &str, max: usize) -> Value {
    json!({
        "type": "string",
        "description": format!("{description} (free text: 1 to {max} bytes, not only whitespace, no control characters or Unicode noncharacters)"),
        "minLength": 1,
        "maxLength": max,
        "pattern": TEXT_PATTERN,
    })
}

/// Free text as a pattern: at least one character that is not whitespace, none that is a
/// control character or a noncharacter.
const TEXT_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f\\ufdd0-\\ufdef\\ufffe\\uffff]*[^\\s\\u0000-\\u001f\\u007f-\\u009f\\ufdd0-\\ufdef\\ufffe\\uffff][^\\u0000-\\u001f\\u007f-\\u009f\\ufdd0-\\ufdef\\ufffe\\uffff]*$";

/// Text that may be empty: at most `max` bytes, no control characters or noncharacters.
fn optional_text(description: &str, max: usize) -> Value {
    json!({ "type": "string", "description": format!("{description} (at most {max} bytes, no control characters)"), "maxLength": max, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\ufdd0-\\ufdef\\ufffe\\uffff]*$" })
}

/// A string in one of the id grammars.
fn grammar(g: &Grammar, description: &str) -> Value {
    json!({ "type": "string", "description": description, "pattern": g.pattern, "minLength": 1, "maxLength": g.max_len })
}

fn id(description: &str) -> Value {
    grammar(
        &ID,
        &format!(
            "{description} (a letter or digit, then letters, digits, '-', '_', '.'; at most 128)"
        ),
    )
}

fn pem(description: &str) -> Value {
    json!({ "type": "string", "description": format!("{description} (at most {} bytes of printable ASCII and line breaks)", ids::MAX_PEM), "maxLength": ids::MAX_PEM, "pattern": "^[ -~\\r\\n]*$" })
}

fn signature(description: &str) -> Value {
    json!({ "type": "string", "description": description, "pattern": "^[A-Za-z0-9+/=_-]+$", "minLength": 1, "maxLength": ids::MAX_SIGNATURE })
}

fn digest(description: &str) -> Value {
    json!({ "type": "string", "description": description, "pattern": "^sha256:[0-9a-f]{64}$" })
}

fn list(description: &str) -> Value {
    json!({ "maxItems": ids::MAX_LIST, "description": description })
}

/// A DSSE envelope as a request must carry it: in-toto, with exactly one signature. (The
/// `Envelope` component also describes the empty envelopes of entities recorded before proofs
/// were envelopes, so these two rules are the request's.)
fn signed_envelope(description: &str) -> Value {
    json!({
        "allOf": [
            { "$ref": "#/components/schemas/Envelope" },
            { "properties": {
                "payloadType": { "enum": [tom_contract::claims::IN_TOTO_PAYLOAD_TYPE] },
                "signatures": { "minItems": 1 },
            } },
        ],
        "description": description,
    })
}

fn describe(description: &str) -> Value {
    json!({ "description": description })
}

/// The schema of a path or query parameter, from its rule.
pub fn param_schema(param: &super::Param) -> Value {
    match param.rule {
        Rule::Values => json!({ "type": param.kind, "enum": param.values }),
        Rule::Grammar(g) => grammar(g, param.description),
        Rule::Text(max) => text(param.description, max),
        Rule::MaxLen(max) => string_max(param.description, max),
        Rule::Range(min, max) => json!({ "type": "integer", "minimum": min, "maximum": max }),
        Rule::Timestamp => {
            json!({ "type": "string", "format": "date-time", "maxLength": ids::MAX_TIMESTAMP })
        }
        Rule::EventId => json!({
            "type": "string",
            "pattern": format!("^[0-9]{{1,20}}\\.{}", ids::TX_ID.pattern.trim_start_matches('^')),
            "maxLength": 21 + ids::MAX_ID_LEN,
            "description": param.description,
        }),
        Rule::Kinds => {
            let kind = format!("\\s*({})\\s*", super::events::KINDS.join("|"));
            json!({ "type": "string", "pattern": format!("^{kind}(,{kind})*$") })
        }
    }
}

fn free(description: &str) -> Value {
    json!({ "type": "object", "description": description, "additionalProperties": true })
}

const PEM: &str = "X.509 certificate, PEM";
const SIG: &str = "base64 DER ECDSA P-256/SHA-256 signature";
const MSP_ID: &str = "MSP id";

/// The component name of each request body and the contract type it is derived from. The
/// device's body keeps its own name: it is the contract's `IdentifyDevice`, whose `node_id` only
/// a gateway with an orchestrator accepts.
const IDENTIFY_DEVICE_BODY: &str = "IdentifyDeviceBody";

/// What the contract's types give the document: the component schemas of every request body
/// and answer (and every type they hold), which of them the request bodies use, and each
/// transaction's answer schema by function name.
struct Derived {
    schemas: Map<String, Value>,
    requests: Vec<String>,
    answers: BTreeMap<&'static str, Value>,
}

/// The schemas derived from the contract's types (OpenAPI 3.0 dialect: `nullable`, references
/// under `#/components/schemas/`).
fn derived() -> Derived {
    let mut generator = SchemaSettings::openapi3()
        .with(|s| s.meta_schema = None)
        .into_generator();
    // Each call registers the type, and every named type it holds, as a component.
    generator.subschema_for::<requests::RegisterOrg>();
    generator.subschema_for::<requests::IdentifyDevice>();
    generator.subschema_for::<requests::IdentifyContainer>();
    generator.subschema_for::<requests::PlaceContainer>();
    generator.subschema_for::<requests::RecordOutcome>();
    generator.subschema_for::<requests::RecordDrift>();
    generator.subschema_for::<requests::DefineContract>();
    generator.subschema_for::<requests::RecordData>();
    generator.subschema_for::<requests::ExecContract>();
    let rename = |name: &str| match name {
        "IdentifyDevice" => IDENTIFY_DEVICE_BODY.to_owned(),
        other => other.to_owned(),
    };
    let requests: Vec<String> = generator.definitions().keys().map(|n| rename(n)).collect();
    // Every transaction's answer, from the contract's registry.
    let answers: Vec<(&'static str, Value)> = transaction_schemas(&mut generator)
        .into_iter()
        .map(|t| (t.name, t.response.to_value()))
        .collect();
    let mut schemas = generator.take_definitions(true);
    if let Some(device) = schemas.remove("IdentifyDevice") {
        schemas.insert(IDENTIFY_DEVICE_BODY.into(), device);
    }
    // The answers were taken before the transforms ran on the definitions: run the same ones
    // on them (a `$ref` is untouched; an inline array of references becomes OpenAPI 3.0).
    let answers = answers
        .into_iter()
        .map(|(name, answer)| {
            let mut schema = Schema::try_from(answer).unwrap_or_default();
            for transform in generator.transforms_mut() {
                transform.transform(&mut schema);
            }
            (name, schema.to_value())
        })
        .collect();
    Derived {
        schemas,
        requests,
        answers,
    }
}

/// The derived schemas with [`rules`] laid over the request bodies'.
fn request_schemas(derived: &Derived) -> Map<String, Value> {
    let mut schemas = derived.schemas.clone();
    for (name, pointer, rule) in rules() {
        if !derived.requests.iter().any(|r| r == name) {
            continue;
        }
        if let Some(target) = schemas
            .get_mut(name)
            .and_then(|schema| schema.pointer_mut(pointer))
        {
            lay_over(target, rule);
        }
    }
    // A contract must USE or GENERATE something.
    if let Some(contract) = schemas.get_mut("DefineContract") {
        contract["anyOf"] = json!([
            { "required": ["uses"], "properties": { "uses": { "minItems": 1 } } },
            { "required": ["generates"], "properties": { "generates": { "minItems": 1 } } },
        ]);
    }
    schemas
}

/// Add `rule`'s keywords to the derived `target` (a `null` keyword removes the derived one). A
/// reference takes no siblings in OpenAPI 3.0, so a described reference becomes
/// `allOf: [reference]` beside its description.
fn lay_over(target: &mut Value, rule: Value) {
    let Value::Object(rule) = rule else { return };
    if target.get("$ref").is_some() {
        *target = json!({ "allOf": [target.take()] });
    }
    if let Value::Object(target) = target {
        for (keyword, value) in rule {
            if value.is_null() {
                target.remove(&keyword);
            } else {
                target.insert(keyword, value);
            }
        }
    }
}

/// What each request field must be beyond its type (its bound in `tom_contract::bounds`) and
/// what it means: (component, JSON pointer into it, keywords laid over the derived schema).
fn rules() -> Vec<(&'static str, &'static str, Value)> {
    let string = |what: &str| text(what, ids::MAX_TEXT);
    // A set on the contract's side, but a repeated MSP id is accepted (and kept once), so the
    // document does not demand unique items.
    let consent = |what: &str| json!({ "maxItems": ids::MAX_LIST, "uniqueItems": null, "description": format!("MSP ids of other organisations {what}") });
    // Written out with a worked openssl example in device_id_proof.md (a test runs it).
    let device_proof = include_str!("device_id_proof.md");
    vec![
        ("RegisterOrg", "/properties/msp_id", id("the caller's own MSP id")),
        ("RegisterOrg", "/properties/name", optional_text("display name", ids::MAX_NAME)),
        ("RegisterOrg", "/properties/ca_certificates", json!({ "maxItems": ids::MAX_CA_CERTIFICATES, "description": "PEM CA certificates that issue the organisation's identities" })),
        ("RegisterOrg", "/properties/ca_certificates/items", pem("CA certificate")),
        ("RegisterOrg", "/properties/policy", describe("what the organisation demands of its containers and which other organisations it consents to (all empty by default)")),
        ("OrgPolicy", "/properties/publishers", json!({ "maxProperties": ids::MAX_PUBLISHERS, "description": "publisher name (an id: ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$) -> certificate PEM" })),
        ("OrgPolicy", "/properties/publishers/additionalProperties", pem("publisher certificate")),
        ("OrgPolicy", "/properties/orchestrators", consent("whose orchestrators may act on this organisation's devices, containers, contracts and data")),
        ("OrgPolicy", "/properties/orchestrators/items", grammar(&ID, MSP_ID)),
        ("OrgPolicy", "/properties/hosts_containers_of", consent("whose containers may be placed on this organisation's devices")),
        ("OrgPolicy", "/properties/hosts_containers_of/items", grammar(&ID, MSP_ID)),
        ("OrgPolicy", "/properties/shares_data_with", consent("whose activities may use or derive from this organisation's data")),
        ("OrgPolicy", "/properties/shares_data_with/items", grammar(&ID, MSP_ID)),
        (IDENTIFY_DEVICE_BODY, "/properties/device_id", id("device id")),
        (IDENTIFY_DEVICE_BODY, "/properties/org", id("MSP id of the device's organisation")),
        (IDENTIFY_DEVICE_BODY, "/properties/kind", id("sensor, actuator, gateway, compute, vehicle, ...")),
        (IDENTIFY_DEVICE_BODY, "/properties/certificate", pem(PEM)),
        (IDENTIFY_DEVICE_BODY, "/properties/nonce", grammar(&NONCE, "single-use nonce chosen by the device")),
        (IDENTIFY_DEVICE_BODY, "/properties/proof", signed_envelope(device_proof)),
        (IDENTIFY_DEVICE_BODY, "/properties/node_id", text("gateway-only: the orchestrator's node for this device; a gateway without an orchestrator answers 400 when it is given", ids::MAX_ID_LEN)),
        ("IdentifyContainer", "/properties/container_id", id("container id")),
        ("IdentifyContainer", "/properties/org", id(MSP_ID)),
        ("IdentifyContainer", "/properties/image", string("image reference")),
        ("IdentifyContainer", "/properties/digest", digest("sha256:<64 lowercase hex>")),
        ("IdentifyContainer", "/properties/certificate", pem("workload certificate (PEM, tom.role=device) whose key signs the data it generates; needs nonce and proof")),
        ("IdentifyContainer", "/properties/nonce", grammar(&NONCE, "single-use nonce of the workload's proof")),
        ("IdentifyContainer", "/properties/proof", describe("the workload's proof of key possession: as a device's, with entity_type \"container\" and kind = the image digest")),
        ("PublisherSignature", "/properties/publisher", id("a publisher in the org's policy")),
        ("PublisherSignature", "/properties/signature", signature(SIG)),
        ("Envelope", "", describe("a DSSE envelope (the JSON encoding of the DSSE protocol) over an in-toto Statement v1, with exactly one signature")),
        ("Envelope", "/properties/payloadType", json!({ "maxLength": 64, "description": format!("{} in every request (a stored entity recorded before envelopes has an empty envelope)", tom_contract::claims::IN_TOTO_PAYLOAD_TYPE) })),
        ("Envelope", "/properties/payload", json!({ "description": "base64 of the in-toto Statement v1 JSON", "pattern": "^[A-Za-z0-9+/=]*$", "maxLength": tom_contract::claims::MAX_PAYLOAD_BYTES * 4 / 3 + 4 })),
        ("Envelope", "/properties/signatures", json!({ "maxItems": 1 })),
        ("EnvelopeSignature", "/properties/sig", signature("base64 DER ECDSA P-256/SHA-256 signature over the DSSE pre-authentication encoding")),
        ("EnvelopeSignature", "/properties/keyid", json!({ "description": "hex SHA-256 of the signer's certificate (a hint)", "pattern": "^[0-9a-fA-F]*$", "maxLength": 64 })),
        ("PlaceContainer", "/properties/container_id", id("container id")),
        ("PlaceContainer", "/properties/device_id", id("device id")),
        ("RecordOutcome", "/properties/container_id", id("container id")),
        ("RecordOutcome", "/properties/action", json!({ "enum": ["place", "terminate"] })),
        ("RecordOutcome", "/properties/authorising_tx", grammar(&TX_ID, "the PLACE or TERMINATE transaction id")),
        ("RecordOutcome", "/properties/outcome", json!({ "enum": ["running", "failed", "removed"] })),
        ("RecordOutcome", "/properties/detail", optional_text("what happened", ids::MAX_DETAIL)),
        ("RecordDrift", "/properties/service", text("orchestrator-side name", ids::MAX_NAME)),
        ("RecordDrift", "/properties/description", string("what differs")),
        ("RecordDrift", "/properties/container_id", id("container id")),
        ("RecordDrift", "/properties/action_taken", string("what was done about it")),
        ("RecordDrift", "/properties/placement_status", describe("set the container's placement status to what was observed (needs container_id; the placement must have an outcome)")),
        ("RecordDrift", "/properties/authorising_tx", grammar(&TX_ID, "with placement_status: the placement it is about must be this, the current PLACE transaction")),
        ("RecordDrift", "/properties/device_id", id("a device whose availability was observed (with device_status)")),
        ("RecordDrift", "/properties/device_status", describe("unavailable: drained or down, not left (identity and placements stand)")),
        ("DefineContract", "/properties/contract_id", id("contract id")),
        ("DefineContract", "/properties/contractor", id("the activity: a container or actuator device")),
        ("DefineContract", "/properties/deadline", json!({ "format": "date-time", "maxLength": ids::MAX_TIMESTAMP, "description": "RFC 3339, after the transaction time" })),
        ("DefineContract", "/properties/uses", list("USE clauses")),
        ("DefineContract", "/properties/generates", list("GENERATE clauses")),
        ("UseClause", "/properties/kind", id("data kind")),
        ("UseClause", "/properties/source", id("only from this generator")),
        ("GenerateClause", "/properties/kind", id("data kind")),
        ("RecordData", "/properties/data_id", id("data id")),
        ("RecordData", "/properties/kind", id("data kind")),
        ("RecordData", "/properties/hash", digest("sha256:<64 lowercase hex> of the off-chain bytes")),
        ("RecordData", "/properties/size", json!({ "maximum": 9_007_199_254_740_991u64, "description": "bytes" })),
        ("RecordData", "/properties/location", string("URI of the bytes")),
        ("RecordData", "/properties/generated_by", id("generating device or container")),
        ("RecordData", "/properties/claim", signed_envelope("the generator's signed claim: a DSSE envelope signed by the generator's key over an in-toto Statement v1 whose subject is {name: data_id, digest: {sha256: <hex of the bytes>}}, predicateType urn:tom:predicate:data-generation:v1, predicate {ledger: <channel>, kind, size, location, generated_by, derived_from}; every field must equal the request's")),
        ("RecordData", "/properties/derived_from", list("input data ids")),
        ("RecordData", "/properties/derived_from/items", id("input data id")),
        ("ExecContract", "/properties/contract_id", id("contract id")),
        ("ExecContract", "/properties/data_id", id("data id")),
    ]
}

/// The component schemas, by name.
pub fn schemas() -> Map<String, Value> {
    schemas_of(&derived())
}

fn schemas_of(derived: &Derived) -> Map<String, Value> {
    let mut s = request_schemas(derived);
    let string = |what: &str| json!({ "type": "string", "description": what });
    let nullable = |what: &str| json!({ "type": "string", "nullable": true, "description": what });
    s.insert(
        "UnauthorisedServices".into(),
        json!({
            "type": "object",
            "required": ["services"],
            "additionalProperties": false,
            "properties": {
                "services": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["service_id", "name", "image", "why"],
                        "additionalProperties": false,
                        "properties": {
                            "service_id": string("swarm service id"),
                            "name": string("swarm service name"),
                            "image": string("the image the service runs"),
                            "why": string("why no TOM gateway authorised it"),
                            "container_id": nullable("its tom.container label"),
                            "gateway": nullable("its tom.gateway label"),
                        },
                    },
                },
            },
        }),
    );
    s.insert(
        "Committed".into(),
        json!({
            "type": "object",
            "required": ["tx_id", "status", "block", "record"],
            "properties": {
                "tx_id": string("transaction id"),
                "status": { "type": "string", "enum": ["VALID"], "description": "commit status" },
                "block": { "type": "integer", "description": "block that carries the transaction" },
                "record": { "allOf": [{ "$ref": "#/components/schemas/LedgerRecord" }], "description": "the ledger record the transaction wrote" },
                "outcome": { "$ref": "#/components/schemas/Committed" },
                "detail": string("what the orchestrator did"),
            },
        }),
    );
    let codes: Vec<&str> = crate::api::error::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    s.insert("Error".into(), json!({
        "type": "object",
        "required": ["error", "status", "code", "retryable"],
        "properties": {
            "error": string("what is wrong, for people"),
            "status": { "type": "integer" },
            "code": {
                "type": "string",
                "enum": codes,
                "description": "what is wrong, for programs. A 409 is `mvcc_conflict` (a concurrent transaction changed what this one read: send it again, after `Retry-After` seconds), `guard_failed` (the state machine refused the transition: it never passes as it is), `already_exists` or `duplicate_transaction`. A 503 is `ledger_unavailable` (nothing was recorded; e.g. the ledger's storage is full or its peers are down) or `outcome_unknown` (the transaction was submitted but its commit was not seen: ask `GET /v1/transactions/{tx_id}` before sending it again)."
            },
            "outcome": {
                "type": "string",
                "enum": ["not_recorded", "unknown"],
                "description": "for a ledger failure: `not_recorded` (the outcome is known: nothing took effect) or `unknown` (submitted, commit not seen; see `tx_id`)"
            },
            "tx_id": string("the transaction to ask about (`outcome_unknown`) or the one invalidated (`mvcc_conflict`, `duplicate_transaction`)"),
            "retryable": { "type": "boolean", "description": "whether sending the same request again can succeed without anything else changing (`mvcc_conflict`, `ledger_unavailable`)" }
        }
    }));
    for (name, description) in [
        ("Health", "{status: \"ok\", version}"),
        (
            "Ready",
            "{status: \"ready\" | \"not ready\", ledger: {ready, detail}, orchestrator}",
        ),
    ] {
        s.insert(name.into(), free(description));
    }
    s
}

/// A PEM block as the examples show it (what a certificate looks like, not one that chains).
const EXAMPLE_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBtzCCAV2gAwIBAgIUSl3bO0ZJ1l0i7vBpr6yGQ0a0m9MwCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n";

/// A DSSE envelope as the examples show it (the shape; its signature does not verify).
fn example_envelope() -> Value {
    json!({
        "payloadType": tom_contract::claims::IN_TOTO_PAYLOAD_TYPE,
        "payload": "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEifQ==",
        "signatures": [{
            "keyid": "9f2c4e1a7b3d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8",
            "sig": "MEUCIQC3k1mWq0Zr8nqgB6y1dJx3s2fE5tR7uV9wXyZ0aBcDeQIgR2s4t6v8x0z2B4d6F8h0J2l4N6p8R0t2V4x6Z8b0d2E=",
        }],
    })
}

/// The request example of each write with a body: what a caller sends, in the paper's smart
/// city. A test decodes each into its contract type and validates it against its schema.
fn example(op: Op) -> Option<Value> {
    let example = match op {
        Op::RegisterOrg => json!({
            "msp_id": "CityMSP",
            "name": "City of Bolzano, traffic department",
            "ca_certificates": [EXAMPLE_PEM],
            "policy": {
                "orchestrators": ["EdgeOpsMSP"],
                "hosts_containers_of": ["EdgeOpsMSP"],
                "shares_data_with": [],
                "require_image_signature": false,
                "publishers": {},
            },
        }),
        Op::IdentifyDevice => json!({
            "device_id": "traffic-light-1",
            "org": "CityMSP",
            "kind": "actuator",
            "certificate": EXAMPLE_PEM,
            "nonce": "7f3a9c1e-5b2d-4e8f-a6c0-1d2e3f4a5b6c",
            "proof": example_envelope(),
        }),
        Op::IdentifyContainer => json!({
            "container_id": "incident-analyser-1",
            "org": "CityMSP",
            "image": "tom-workload:analyser",
            "digest": "sha256:3b9c2f1e0d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c",
        }),
        Op::PlaceContainer => json!({
            "container_id": "incident-analyser-1",
            "device_id": "edge-node-1",
        }),
        Op::RecordOutcome => json!({
            "container_id": "incident-analyser-1",
            "action": "place",
            "authorising_tx": "5d41402abc4b2a76b9719d911017c592ae3e7b3f1c2d4e5f60718293a4b5c6d7",
            "outcome": "running",
            "detail": "service tom-incident-analyser-1 runs on node edge-node-1",
        }),
        Op::RecordDrift => json!({
            "service": "tom-incident-analyser-1",
            "container_id": "incident-analyser-1",
            "description": "the service has no running task",
            "action_taken": "reported; the service is left as it is",
            "placement_status": "stopped",
        }),
        Op::DefineContract => json!({
            "contract_id": "incident-analysis-1",
            "contractor": "incident-analyser-1",
            "uses": [{ "kind": "traffic-count", "source": "camera-1" }],
            "generates": [{ "kind": "incident-report" }],
            "deadline": "2030-01-01T00:00:00Z",
        }),
        Op::RecordData => json!({
            "data_id": "traffic-count-0001",
            "kind": "traffic-count",
            "hash": "sha256:9e107d9d372bb6826bd81d3542a419d6e4c1f0b2a3d4c5e6f708192a3b4c5d6e",
            "size": 512,
            "location": "https://data.city.example/traffic-count-0001",
            "generated_by": "camera-1",
            "derived_from": [],
            "claim": example_envelope(),
        }),
        Op::ExecContract => json!({
            "contract_id": "incident-analysis-1",
            "data_id": "traffic-count-0001",
        }),
        _ => return None,
    };
    Some(example)
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn error_with_retry_after(description: &str) -> Value {
    let mut response = error_response(description);
    response["headers"] = json!({ "Retry-After": { "description": "seconds to wait before retrying (sent when `retryable` is true), or before asking about the transaction (`outcome_unknown`)", "schema": { "type": "integer" } } });
    response
}

/// The whole document.
pub fn document() -> Value {
    let derived = derived();
    let mut paths = Map::new();
    for route in ROUTES {
        let parameters: Vec<Value> = route
            .params
            .iter()
            .map(|p| {
                json!({ "name": p.name, "in": if p.in_path { "path" } else { "query" }, "required": p.required, "description": p.description, "schema": param_schema(p) })
            })
            .collect();
        let ok = match route.reply {
            Reply::Committed => {
                json!({ "description": "committed", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Committed" } } } })
            }
            Reply::Json("") => {
                json!({ "description": "OK", "content": { "application/json": {} } })
            }
            Reply::Json(schema) => {
                json!({ "description": "OK", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
            }
            Reply::Answer => {
                let answer = route
                    .function
                    .and_then(|f| derived.answers.get(f))
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                json!({ "description": "OK: the contract's answer", "content": { "application/json": { "schema": answer } } })
            }
            Reply::EventStream => {
                json!({ "description": "event stream", "content": { "text/event-stream": { "schema": { "type": "string" } } } })
            }
            Reply::Text => {
                json!({ "description": "OK", "content": { "text/plain": { "schema": { "type": "string" } } } })
            }
            Reply::Html => {
                json!({ "description": "OK", "content": { "text/html": { "schema": { "type": "string" } } } })
            }
        };
        let mut responses = Map::new();
        let ok_status = if route.reply == Reply::Committed && route.method == "post" {
            "201"
        } else {
            "200"
        };
        responses.insert(ok_status.into(), ok);
        if route.op == Op::Events {
            responses.insert(
                "503".into(),
                error_with_retry_after("resuming (`Last-Event-ID`/`after`) needs the ledger, which is unavailable: reconnect after `Retry-After` seconds"),
            );
        }
        if route.op == Op::Ready {
            responses.insert(
                "503".into(),
                json!({ "description": "not ready: `ledger.detail` says why (e.g. ledger storage full, commit thread stopped)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Ready" } } } }),
            );
        }
        if route.auth {
            responses.insert("401".into(), error_response("missing or unknown API token"));
        }
        if route.function.is_some() || !route.params.is_empty() {
            responses.insert(
                "400".into(),
                error_response("bad input: malformed JSON, a repeated key, an unknown field or parameter, a value outside its rule (named in the message)"),
            );
        }
        if route.op == Op::SwarmUnauthorised {
            responses.insert(
                "400".into(),
                error_response(
                    "this gateway has no container orchestrator (start it with --swarm)",
                ),
            );
        }
        if route.function.is_some() {
            responses.insert(
                "403".into(),
                error_response("the caller's role or proof does not allow this"),
            );
            responses.insert(
                "404".into(),
                error_response("an id the request names does not exist"),
            );
            responses.insert(
                "503".into(),
                error_with_retry_after("the ledger is unavailable (`code`: `ledger_unavailable`; e.g. its storage is full or its peers are down): nothing was recorded, retry after `Retry-After` seconds; or a transaction was submitted but its commit was not seen (`code`: `outcome_unknown`, `outcome`: `unknown`): ask `GET /v1/transactions/{tx_id}` before sending it again"),
            );
        }
        if matches!(
            route.op,
            Op::PlaceContainer | Op::TerminateContainer | Op::IdentifyDevice | Op::TerminateDevice
        ) {
            responses.insert(
                "502".into(),
                error_response("with an orchestrator (`tom serve --swarm`): the ledger transaction committed but the orchestrator could not carry it out; the message names what the ledger now records (e.g. the placement recorded as failed with the engine's words, the removal recorded as failed, the device left but its node label could not be removed)"),
            );
        }
        if route.reply == Reply::Committed {
            responses.insert(
                "409".into(),
                error_with_retry_after("refused by the state machine's guards (`code`: `guard_failed`, `already_exists`; not retryable), or invalidated at commit by a concurrent transaction (`code`: `mvcc_conflict`, retryable after `Retry-After` seconds)"),
            );
        }
        if route.body.is_some() {
            responses.insert(
                "413".into(),
                error_response(&format!(
                    "request body larger than {} bytes",
                    super::BODY_LIMIT
                )),
            );
            responses.insert(
                "415".into(),
                error_response("the body is not sent as `Content-Type: application/json`"),
            );
        }
        let mut operation = json!({
            "operationId": format!("{:?}", route.op),
            "summary": route.summary,
            "tags": [route.tag],
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(function) = route.function {
            operation["x-tom-contract-function"] = json!(function);
        }
        if route.auth {
            operation["security"] = json!([{ "bearer": [] }]);
        }
        if let Some(body) = route.body {
            let mut media = json!({ "schema": { "$ref": format!("#/components/schemas/{body}") } });
            if let Some(example) = example(route.op) {
                media["example"] = example;
            }
            operation["requestBody"] =
                json!({ "required": true, "content": { "application/json": media } });
        }
        super::audit_page::document(route, &mut operation);
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[route.method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "TOM gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Trusted Orchestration Manager: every orchestration action becomes one ledger transaction, signed as the caller's ledger identity.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas_of(&derived),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "an API token issued by `tom identity add` (or the development bootstrap)" } },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rule lands on a field the derived schema has: a renamed or removed field fails
    /// here instead of leaving its rule silently unused.
    #[test]
    fn every_rule_names_a_field_of_its_derived_schema() {
        let derived = derived();
        for (name, pointer, _) in rules() {
            assert!(
                derived.requests.iter().any(|r| r == name),
                "{name} is not a request body's type"
            );
            let schema = derived
                .schemas
                .get(name)
                .unwrap_or_else(|| panic!("no derived schema {name}"));
            assert!(
                schema.pointer(pointer).is_some(),
                "{name}{pointer} is not in the derived schema {schema:#}"
            );
        }
    }

    /// Every string, list and map of every request body (and every type it holds) states its
    /// bound: a field added to a contract request type without a rule here fails.
    #[test]
    fn every_request_field_is_bounded() {
        fn check(name: &str, schema: &Value) {
            if let Some(all) = schema["allOf"].as_array() {
                all.iter().for_each(|s| check(name, s));
            }
            if let Some(any) = schema["anyOf"].as_array() {
                any.iter().for_each(|s| check(name, s));
            }
            match schema["type"].as_str() {
                Some("string") => assert!(
                    schema.get("maxLength").is_some()
                        || schema.get("enum").is_some()
                        || schema.get("pattern").is_some(),
                    "{name}: unbounded string {schema}"
                ),
                Some("array") => {
                    assert!(schema.get("maxItems").is_some(), "{name}: unbounded list");
                    check(&format!("{name}[]"), &schema["items"]);
                }
                Some("object") => {
                    for (field, s) in schema["properties"].as_object().into_iter().flatten() {
                        check(&format!("{name}.{field}"), s);
                    }
                    if let Some(extra) = schema["additionalProperties"].as_object() {
                        assert!(
                            schema.get("maxProperties").is_some(),
                            "{name}: unbounded map"
                        );
                        check(name, &Value::Object(extra.clone()));
                    }
                }
                _ => {}
            }
        }
        let derived = derived();
        let schemas = schemas();
        assert!(derived.requests.len() >= 9, "{:?}", derived.requests);
        for name in &derived.requests {
            check(name, &schemas[name]);
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(schemas.contains_key(&name), "dangling $ref {name}");
        }
    }
}
