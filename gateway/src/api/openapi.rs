//! The OpenAPI 3.0 document served at `/openapi.json`, built from [`super::ROUTES`] (so every
//! route the router serves is documented) and hand-written component schemas mirroring the
//! contract's request types (a test checks their fields against those types).

use serde_json::{json, Map, Value};

use tom_contract::ids::{self, Grammar, ID, NONCE, TX_ID};

use super::{Reply, Rule, ROUTES};

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

/// A string in one of the id grammars.
fn grammar(g: &Grammar, description: &str) -> Value {
    json!({ "type": "string", "description": description, "pattern": g.pattern, "minLength": 1, "maxLength": g.max_len })
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

/// An optional field that may also be sent as `null` (the contract's `Option` fields).
fn nullable(mut schema: Value) -> Value {
    schema["nullable"] = json!(true);
    schema
}

/// A DSSE envelope (the `DsseEnvelope` schema) with its own description.
fn envelope(description: &str) -> Value {
    json!({ "allOf": [{ "$ref": "#/components/schemas/DsseEnvelope" }], "description": description })
}

fn list(items: Value, description: &str) -> Value {
    json!({ "type": "array", "items": items, "maxItems": ids::MAX_LIST, "description": description })
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

/// A closed object schema: `required` fields first, then optional ones.
fn object(required: &[(&str, Value)], optional: &[(&str, Value)]) -> Value {
    let mut properties = Map::new();
    for (name, schema) in required.iter().chain(optional) {
        properties.insert((*name).to_owned(), schema.clone());
    }
    let names: Vec<&str> = required.iter().map(|(n, _)| *n).collect();
    let mut schema =
        json!({ "type": "object", "properties": properties, "additionalProperties": false });
    // OpenAPI 3.0 forbids an empty `required` list.
    if !names.is_empty() {
        schema["required"] = json!(names);
    }
    schema
}

fn free(description: &str) -> Value {
    json!({ "type": "object", "description": description, "additionalProperties": true })
}

const PEM: &str = "X.509 certificate, PEM";
const SIG: &str = "base64 DER ECDSA P-256/SHA-256 signature";

/// The component schemas, by name.
pub fn schemas() -> Map<String, Value> {
    let id = |what: &str| {
        grammar(
            &ID,
            &format!(
                "{what} (a letter or digit, then letters, digits, '-', '_', '.'; at most 128)"
            ),
        )
    };
    let string = |what: &str| text(what, ids::MAX_TEXT);
    let mut s = Map::new();
    s.insert(
        "RegisterOrg".into(),
        object(
            &[
                ("msp_id", id("the caller's own MSP id")),
                (
                    "ca_certificates",
                    json!({ "type": "array", "items": pem("CA certificate"), "maxItems": ids::MAX_CA_CERTIFICATES, "description": "PEM CA certificates that issue the organisation's identities" }),
                ),
            ],
            &[
                ("name", json!({ "type": "string", "description": format!("display name (at most {} bytes, no control characters)", ids::MAX_NAME), "maxLength": ids::MAX_NAME, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\ufdd0-\\ufdef\\ufffe\\uffff]*$" })),
                (
                    "policy",
                    object(&[], &[
                        ("require_image_signature", json!({ "type": "boolean" })),
                        ("publishers", json!({ "type": "object", "additionalProperties": pem("publisher certificate"), "maxProperties": ids::MAX_PUBLISHERS, "description": "publisher name (an id: ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$) -> certificate PEM" })),
                        ("orchestrators", list(grammar(&ID, "MSP id"), "MSP ids of other organisations whose orchestrators may act on this organisation's devices, containers, contracts and data")),
                        ("hosts_containers_of", list(grammar(&ID, "MSP id"), "MSP ids of other organisations whose containers may be placed on this organisation's devices")),
                        ("shares_data_with", list(grammar(&ID, "MSP id"), "MSP ids of other organisations whose activities may use or derive from this organisation's data")),
                    ]),
                ),
            ],
        ),
    );
    s.insert(
        "IdentifyDeviceBody".into(),
        object(
            &[
                ("device_id", id("device id")),
                ("org", id("MSP id of the device's organisation")),
                ("kind", id("sensor, actuator, gateway, compute, vehicle, ...")),
                ("certificate", pem(PEM)),
                ("nonce", grammar(&NONCE, "single-use nonce chosen by the device")),
                ("proof", envelope(include_str!("device_id_proof.md"))),
            ],
            &[("node_id", nullable(text("gateway-only: the orchestrator's node for this device; a gateway without an orchestrator answers 400 when it is given", ids::MAX_ID_LEN)))],
        ),
    );
    s.insert(
        "IdentifyContainer".into(),
        object(
            &[("container_id", id("container id")), ("org", id("MSP id")), ("image", string("image reference")), ("digest", digest("sha256:<64 lowercase hex>"))],
            &[
                ("publisher_signature", nullable(object(&[("publisher", id("a publisher in the org's policy")), ("signature", signature(SIG))], &[]))),
                ("certificate", nullable(pem("workload certificate (PEM, tom.role=device) whose key signs the data it generates; needs nonce and proof"))),
                ("nonce", nullable(grammar(&NONCE, "single-use nonce of the workload's proof"))),
                ("proof", nullable(envelope("the workload's proof of key possession: as a device's, with entity_type \"container\" and kind = the image digest"))),
            ],
        ),
    );
    s.insert(
        "DsseEnvelope".into(),
        object(
            &[
                ("payloadType", json!({ "type": "string", "enum": [tom_contract::claims::IN_TOTO_PAYLOAD_TYPE] })),
                ("payload", json!({ "type": "string", "description": "base64 of the in-toto Statement v1 JSON", "pattern": "^[A-Za-z0-9+/=]*$", "maxLength": tom_contract::claims::MAX_PAYLOAD_BYTES * 4 / 3 + 4 })),
                ("signatures", json!({ "type": "array", "minItems": 1, "maxItems": 1, "items": object(&[("sig", signature("base64 DER ECDSA P-256/SHA-256 signature over the DSSE pre-authentication encoding"))], &[("keyid", json!({ "type": "string", "description": "hex SHA-256 of the signer's certificate (a hint)", "pattern": "^[0-9a-f]*$", "maxLength": 64 }))]) })),
            ],
            &[],
        ),
    );
    s.insert(
        "UnauthorisedServices".into(),
        object(
            &[(
                "services",
                json!({ "type": "array", "items": object(
                    &[
                        ("service_id", string("swarm service id")),
                        ("name", string("swarm service name")),
                        ("image", string("the image the service runs")),
                        ("why", string("why no TOM gateway authorised it")),
                    ],
                    &[
                        ("container_id", json!({ "type": "string", "nullable": true, "description": "its tom.container label" })),
                        ("gateway", json!({ "type": "string", "nullable": true, "description": "its tom.gateway label" })),
                    ],
                ) }),
            )],
            &[],
        ),
    );
    s.insert(
        "PlaceContainer".into(),
        object(
            &[
                ("container_id", id("container id")),
                ("device_id", id("device id")),
            ],
            &[],
        ),
    );
    s.insert(
        "RecordOutcome".into(),
        object(
            &[
                ("container_id", id("container id")),
                (
                    "action",
                    json!({ "type": "string", "enum": ["place", "terminate"] }),
                ),
                (
                    "authorising_tx",
                    grammar(&TX_ID, "the PLACE or TERMINATE transaction id"),
                ),
                (
                    "outcome",
                    json!({ "type": "string", "enum": ["running", "failed", "removed"] }),
                ),
            ],
            &[("detail", json!({ "type": "string", "description": format!("what happened (at most {} bytes, no control characters)", ids::MAX_DETAIL), "maxLength": ids::MAX_DETAIL, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\ufdd0-\\ufdef\\ufffe\\uffff]*$" }))],
        ),
    );
    s.insert(
        "RecordDrift".into(),
        object(
            &[
                ("service", text("orchestrator-side name", ids::MAX_NAME)),
                ("description", string("what differs")),
            ],
            &[
                ("container_id", nullable(id("container id"))),
                ("action_taken", nullable(string("what was done about it"))),
                ("placement_status", nullable(json!({ "type": "string", "enum": ["running", "missing", "stopped", "unavailable", "drifted"], "description": "set the container's placement status to what was observed (needs container_id; the placement must have an outcome)" }))),
                ("authorising_tx", nullable(grammar(&TX_ID, "with placement_status: the placement it is about must be this, the current PLACE transaction"))),
                ("device_id", nullable(id("a device whose availability was observed (with device_status)"))),
                ("device_status", nullable(json!({ "type": "string", "enum": ["available", "unavailable"], "description": "unavailable: drained or down, not left (identity and placements stand)" }))),
            ],
        ),
    );
    s.insert(
        "DefineContract".into(),
        object(
            &[("contract_id", id("contract id")), ("contractor", id("the activity: a container or actuator device")), ("deadline", json!({ "type": "string", "format": "date-time", "maxLength": ids::MAX_TIMESTAMP, "description": "RFC 3339, after the transaction time" }))],
            &[
                ("uses", list(object(&[("kind", id("data kind"))], &[("source", nullable(id("only from this generator")))]), "USE clauses")),
                ("generates", list(object(&[("kind", id("data kind"))], &[]), "GENERATE clauses")),
            ],
        ),
    );
    // A contract must USE or GENERATE something.
    s["DefineContract"]["anyOf"] = json!([
        { "required": ["uses"], "properties": { "uses": { "minItems": 1 } } },
        { "required": ["generates"], "properties": { "generates": { "minItems": 1 } } },
    ]);
    s.insert(
        "RecordData".into(),
        object(
            &[
                ("data_id", id("data id")),
                ("kind", id("data kind")),
                ("hash", digest("sha256:<64 lowercase hex> of the off-chain bytes")),
                ("size", json!({ "type": "integer", "minimum": 0, "maximum": 9_007_199_254_740_991u64, "description": "bytes" })),
                ("location", string("URI of the bytes")),
                ("generated_by", id("generating device or container")),
                ("claim", envelope("the generator's signed claim: a DSSE envelope signed by the generator's key over an in-toto Statement v1 whose subject is {name: data_id, digest: {sha256: <hex of the bytes>}}, predicateType urn:tom:predicate:data-generation:v1, predicate {ledger: <channel>, kind, size, location, generated_by, derived_from}; every field must equal the request's")),
            ],
            &[("derived_from", list(id("input data id"), "input data ids"))],
        ),
    );
    s.insert(
        "ExecContract".into(),
        object(
            &[
                ("contract_id", id("contract id")),
                ("data_id", id("data id")),
            ],
            &[],
        ),
    );
    let string = |what: &str| json!({ "type": "string", "description": what });
    s.insert(
        "Committed".into(),
        json!({
            "type": "object",
            "required": ["tx_id", "status", "block", "record"],
            "properties": {
                "tx_id": string("transaction id"),
                "status": { "type": "string", "enum": ["VALID"], "description": "commit status" },
                "block": { "type": "integer", "description": "block that carries the transaction" },
                "record": free("the ledger record the transaction wrote"),
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
        ("Org", "a registered organisation"),
        (
            "Entity",
            "a device, container or data item (tagged by `type`), or a processing contract",
        ),
        ("History", "array of {tx_id, timestamp, is_delete, value}"),
        (
            "Lineage",
            "the entities, activities, contracts and records linked to an entity",
        ),
        ("ProvDocument", "W3C PROV-JSON document"),
        ("RecordPage", "{records: [LedgerRecord], bookmark}; bookmark is opaque base64url, empty after the last page"),
        ("InventoryPage", "{items: [Entity], bookmark}; bookmark is opaque base64url, empty after the last page"),
        (
            "LedgerRecord",
            "{kind, tx_id, timestamp, agent, subjects, body}",
        ),
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
        if route.op == super::Op::Events {
            responses.insert(
                "503".into(),
                error_with_retry_after("resuming (`Last-Event-ID`/`after`) needs the ledger, which is unavailable: reconnect after `Retry-After` seconds"),
            );
        }
        if route.op == super::Op::Ready {
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
        if route.op == super::Op::SwarmUnauthorised {
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
            super::Op::PlaceContainer
                | super::Op::TerminateContainer
                | super::Op::IdentifyDevice
                | super::Op::TerminateDevice
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
            operation["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{body}") } } } });
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
            "schemas": schemas(),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "an API token issued by `tom identity add` (or the development bootstrap)" } },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use tom_contract::model::{OrgPolicy, UseClause};
    use tom_contract::requests::*;

    fn fields(value: impl serde::Serialize) -> BTreeSet<String> {
        serde_json::to_value(value)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    fn schema_fields(name: &str) -> BTreeSet<String> {
        schemas()[name]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    /// Every request schema lists exactly the fields the contract's type has (all options set).
    #[test]
    fn request_schemas_match_contract_types() {
        let s = || "x".to_owned();
        let check = |name: &str, value: BTreeSet<String>| {
            assert_eq!(schema_fields(name), value, "schema {name}")
        };
        check(
            "RegisterOrg",
            fields(RegisterOrg {
                msp_id: s(),
                name: s(),
                ca_certificates: vec![],
                policy: OrgPolicy::default(),
            }),
        );
        let mut device = fields(IdentifyDevice {
            device_id: s(),
            org: s(),
            kind: s(),
            certificate: s(),
            nonce: s(),
            proof: Default::default(),
            node_id: Some(s()),
        });
        device.insert("node_id".into());
        check("IdentifyDeviceBody", device);
        check(
            "IdentifyContainer",
            fields(IdentifyContainer {
                container_id: s(),
                org: s(),
                image: s(),
                digest: s(),
                publisher_signature: Some(PublisherSignature {
                    publisher: s(),
                    signature: s(),
                }),
                certificate: Some(s()),
                nonce: Some(s()),
                proof: Some(Default::default()),
            }),
        );
        check(
            "PlaceContainer",
            fields(PlaceContainer {
                container_id: s(),
                device_id: s(),
            }),
        );
        check(
            "RecordOutcome",
            fields(RecordOutcome {
                container_id: s(),
                action: s(),
                authorising_tx: s(),
                outcome: s(),
                detail: s(),
            }),
        );
        check(
            "RecordDrift",
            fields(RecordDrift {
                service: s(),
                container_id: Some(s()),
                description: s(),
                action_taken: Some(s()),
                placement_status: Some(tom_contract::model::PlacementStatus::Running),
                authorising_tx: Some(s()),
                device_id: Some(s()),
                device_status: Some(tom_contract::model::DeviceStatus::Available),
            }),
        );
        check(
            "DefineContract",
            fields(DefineContract {
                contract_id: s(),
                contractor: s(),
                uses: vec![UseClause {
                    kind: s(),
                    source: None,
                }],
                generates: vec![],
                deadline: s(),
            }),
        );
        check(
            "RecordData",
            fields(RecordData {
                data_id: s(),
                kind: s(),
                hash: s(),
                size: 1,
                location: s(),
                generated_by: s(),
                derived_from: vec![],
                claim: Default::default(),
            }),
        );
        check(
            "ExecContract",
            fields(ExecContract {
                contract_id: s(),
                data_id: s(),
            }),
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert!(schemas.contains_key(&name), "dangling $ref {name}");
        }
    }
}
