//! Every example in the OpenAPI document is a request the gateway accepts as far as its shape
//! and bounds go: it decodes, through the contract's own `bounds::decode` (serde, no repeated
//! key, every field within its bound), into the request type of the transaction the operation
//! names, and it is valid against the schema the document gives for it (checked by an
//! independent JSON Schema validator). So the documented examples, the derived schemas and the
//! contract's types cannot drift apart unnoticed.

use serde_json::{json, Value};
use tom_contract::bounds::decode;
use tom_contract::requests::*;
use tom_contract::transaction::Transaction;

/// Decode `example` as the request of transaction `T` if `function` names it.
fn decode_if<T: Transaction>(function: &str, bytes: &[u8]) -> Option<Result<(), String>> {
    (function == T::NAME).then(|| decode::<T>(bytes).map(drop))
}

/// Decode `example` as the request of contract function `function`.
fn decode_as(function: &str, example: &Value) -> Result<(), String> {
    let bytes = serde_json::to_vec(example).unwrap();
    let b = &bytes;
    decode_if::<RegisterOrg>(function, b)
        .or_else(|| decode_if::<IdentifyDevice>(function, b))
        .or_else(|| decode_if::<IdentifyContainer>(function, b))
        .or_else(|| decode_if::<PlaceContainer>(function, b))
        .or_else(|| decode_if::<RecordOutcome>(function, b))
        .or_else(|| decode_if::<RecordDrift>(function, b))
        .or_else(|| decode_if::<DefineContract>(function, b))
        .or_else(|| decode_if::<RecordData>(function, b))
        .or_else(|| decode_if::<ExecContract>(function, b))
        .unwrap_or_else(|| Err(format!("no request type with a body is named {function}")))
}

/// The examples of a media type: `example`, and the `value` of each of `examples`.
fn examples_of(media: &Value) -> Vec<(String, Value)> {
    let mut found: Vec<(String, Value)> = media
        .get("example")
        .map(|e| ("example".to_owned(), e.clone()))
        .into_iter()
        .collect();
    for (name, e) in media["examples"].as_object().into_iter().flatten() {
        found.push((format!("examples.{name}"), e["value"].clone()));
    }
    found
}

#[test]
fn every_documented_example_decodes_into_its_request_type_and_fits_its_schema() {
    let doc = tom_gateway::api::openapi::document();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            let Some(media) = op.pointer("/requestBody/content/application~1json") else {
                assert!(
                    examples_of(&op["requestBody"]).is_empty(),
                    "{what}: an example outside a JSON body"
                );
                continue;
            };
            for (name, example) in examples_of(media) {
                let function = op["x-tom-contract-function"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{what} has an example but names no transaction"));
                decode_as(function, &example).unwrap_or_else(|e| {
                    panic!("{what} {name} does not decode as {function}: {e}\n{example:#}")
                });
                // The schema as the document states it, its references resolved in the document.
                let schema = json!({
                    "allOf": [media["schema"].clone()],
                    "components": doc["components"].clone(),
                });
                let validator = jsonschema::validator_for(&schema)
                    .unwrap_or_else(|e| panic!("{what}: the schema does not compile: {e}"));
                let errors: Vec<String> = validator
                    .iter_errors(&example)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{what} {name} does not fit its schema: {errors:#?}"
                );
                checked += 1;
            }
        }
    }
    // Every write with a JSON body documents one example.
    assert_eq!(checked, 9, "examples checked");
}

/// The validator is not lenient: an example with a field its type lacks, or a value out of its
/// bound, is refused by both checks.
#[test]
fn a_wrong_example_fails_both_checks() {
    let doc = tom_gateway::api::openapi::document();
    let media =
        &doc["paths"]["/v1/placements"]["post"]["requestBody"]["content"]["application/json"];
    let schema =
        json!({ "allOf": [media["schema"].clone()], "components": doc["components"].clone() });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let good = media["example"].clone();
    assert!(validator.is_valid(&good));
    assert!(decode_as(PlaceContainer::NAME, &good).is_ok());
    for bad in [
        json!({ "container_id": "c1", "device_id": "d1", "extra": 1 }),
        json!({ "container_id": "c1" }),
        json!({ "container_id": "-starts-with-a-dash", "device_id": "d1" }),
        json!({ "container_id": "c1", "device_id": "d".repeat(129) }),
    ] {
        assert!(!validator.is_valid(&bad), "schema accepted {bad}");
        assert!(
            decode_as(PlaceContainer::NAME, &bad).is_err(),
            "decode accepted {bad}"
        );
    }
}
