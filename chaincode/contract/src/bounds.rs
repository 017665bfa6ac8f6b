//! Every field of every request is bounded before a transaction looks at it: ids by the grammars
//! of [`crate::ids`], free text by its byte bound and allowed characters, lists by their length.
//! [`crate::invoke`] decodes each argument with [`decode`], which also refuses JSON objects that
//! repeat a key (serde would silently keep one of them), so a request means exactly one thing.
//!
//! Each `Bounded` impl destructures its request exhaustively: a field added to a request type
//! does not compile until its bound is stated here.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::claims::{Envelope, EnvelopeSignature, MAX_PAYLOAD_BYTES};
use crate::ids::{self, AGENT, ID, NONCE, TX_ID};
use crate::model::{OrgPolicy, UseClause};
use crate::requests::*;

/// A request whose every field has a stated bound.
pub trait Bounded {
    /// `Ok`, or a message naming the first field out of bounds and its rule.
    fn check_bounds(&self) -> Result<(), String>;
}

/// Decode one JSON argument: no repeated keys at any depth, the type's shape, then its bounds.
pub fn decode<T: DeserializeOwned + Bounded>(json: &[u8]) -> Result<T, String> {
    check_unique_keys(json)?;
    let value: T = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    value.check_bounds()?;
    Ok(value)
}

/// Refuse JSON in which an object repeats a key (at any depth). Malformed JSON is refused too.
pub fn check_unique_keys(json: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    UniqueKeys
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())
}

struct UniqueKeys;

impl<'de> DeserializeSeed<'de> for UniqueKeys {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(UniqueKeys)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate key {} in a JSON object",
                    ids::shown(&key)
                )));
            }
            map.next_value_seed(UniqueKeys)?;
        }
        Ok(())
    }
}

fn text(field: &str, value: &str, max: usize) -> Result<(), String> {
    ids::check_text(field, value, max)
}

fn opt_text(field: &str, value: &Option<String>, max: usize) -> Result<(), String> {
    value.as_deref().map_or(Ok(()), |v| text(field, v, max))
}

fn opt_id(field: &str, value: &Option<String>) -> Result<(), String> {
    value.as_deref().map_or(Ok(()), |v| ID.check(field, v))
}

fn list<T>(
    field: &str,
    items: &[T],
    max: usize,
    each: impl Fn(&T) -> Result<(), String>,
) -> Result<(), String> {
    if items.len() > max {
        return Err(format!(
            "{field} has {} entries; at most {max} are allowed",
            items.len()
        ));
    }
    items.iter().try_for_each(each)
}

/// PEM text: at most [`ids::MAX_PEM`] bytes of printable ASCII and line breaks.
fn pem(field: &str, value: &str) -> Result<(), String> {
    if value.len() > ids::MAX_PEM {
        return Err(format!(
            "{field} is {} bytes; at most {} are allowed",
            value.len(),
            ids::MAX_PEM
        ));
    }
    if let Some(bad) = value
        .bytes()
        .find(|b| !(b.is_ascii_graphic() || matches!(b, b' ' | b'\n' | b'\r')))
    {
        return Err(format!(
            "{field} contains byte 0x{bad:02x}; a PEM certificate is printable ASCII"
        ));
    }
    Ok(())
}

/// Base64 text of a signature.
fn signature(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= ids::MAX_SIGNATURE
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} {} must be 1 to {} base64 characters",
            ids::shown(value),
            ids::MAX_SIGNATURE
        ))
    }
}

/// A short value whose syntax the transaction checks (timestamps): only its length is bounded.
fn short(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() <= max {
        Ok(())
    } else {
        Err(format!(
            "{field} {} must be at most {max} bytes",
            ids::shown(value)
        ))
    }
}

/// A short ASCII token (digests, timestamps, enumerations): at most `max` printable ASCII bytes.
fn ascii(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() <= max && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(format!(
            "{field} {} must be at most {max} printable ASCII characters",
            ids::shown(value)
        ))
    }
}

/// A DSSE envelope: the payload within the claim size, exactly the fields DSSE defines, each
/// signature's base64 and key id bounded. Whether it verifies is the transaction's business.
fn envelope(field: &str, e: &Envelope) -> Result<(), String> {
    let Envelope {
        payload,
        payload_type,
        signatures,
    } = e;
    if payload.len() > MAX_PAYLOAD_BYTES * 4 / 3 + 4 {
        return Err(format!(
            "{field}.payload is {} characters; a claim is at most {MAX_PAYLOAD_BYTES} bytes",
            payload.len()
        ));
    }
    if let Some(bad) = payload
        .bytes()
        .find(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')))
    {
        return Err(format!(
            "{field}.payload contains byte 0x{bad:02x}; it is standard base64"
        ));
    }
    ascii(&format!("{field}.payloadType"), payload_type, 64)?;
    list(
        &format!("{field}.signatures"),
        signatures,
        1,
        |EnvelopeSignature { keyid, sig }| {
            if keyid.len() > 64 || !keyid.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "{field}.signatures.keyid {} must be at most 64 hex digits",
                    ids::shown(keyid)
                ));
            }
            signature(&format!("{field}.signatures.sig"), sig)
        },
    )
}

fn consent(field: &str, orgs: &BTreeSet<String>) -> Result<(), String> {
    if orgs.len() > ids::MAX_LIST {
        return Err(format!(
            "{field} has {} entries; at most {} are allowed",
            orgs.len(),
            ids::MAX_LIST
        ));
    }
    orgs.iter().try_for_each(|org| ID.check(field, org))
}

fn policy(p: &OrgPolicy) -> Result<(), String> {
    let OrgPolicy {
        orchestrators,
        hosts_containers_of,
        shares_data_with,
        require_image_signature: _,
        publishers,
    } = p;
    consent("policy.orchestrators", orchestrators)?;
    consent("policy.hosts_containers_of", hosts_containers_of)?;
    consent("policy.shares_data_with", shares_data_with)?;
    if publishers.len() > ids::MAX_PUBLISHERS {
        return Err(format!(
            "policy.publishers has {} entries; at most {} are allowed",
            publishers.len(),
            ids::MAX_PUBLISHERS
        ));
    }
    for (name, certificate) in publishers {
        ID.check("policy.publishers name", name)?;
        pem("policy.publishers certificate", certificate)?;
    }
    Ok(())
}

/// A request that wraps another's fields has their bounds.
macro_rules! same_bounds {
    ($($name:ident),*) => {$(
        impl Bounded for $name {
            fn check_bounds(&self) -> Result<(), String> {
                self.0.check_bounds()
            }
        }
    )*};
}

same_bounds!(
    TerminateDevice,
    TerminateContainer,
    GetEntity,
    GetHistory,
    GetOrg,
    GetRecord,
    GetLineage,
    ExportProv
);

impl Bounded for RegisterOrg {
    fn check_bounds(&self) -> Result<(), String> {
        let RegisterOrg {
            msp_id,
            name,
            ca_certificates,
            policy: p,
        } = self;
        ID.check("msp_id", msp_id)?;
        ids::check_optional_text("name", name, ids::MAX_NAME)?;
        list(
            "ca_certificates",
            ca_certificates,
            ids::MAX_CA_CERTIFICATES,
            |c| pem("ca_certificates", c),
        )?;
        policy(p)
    }
}

impl Bounded for IdentifyDevice {
    fn check_bounds(&self) -> Result<(), String> {
        let IdentifyDevice {
            device_id,
            org,
            kind,
            certificate,
            nonce,
            proof,
            node_id,
        } = self;
        ID.check("device_id", device_id)?;
        ID.check("org", org)?;
        ID.check("kind", kind)?;
        pem("certificate", certificate)?;
        NONCE.check("nonce", nonce)?;
        opt_text("node_id", node_id, ids::MAX_NAME)?;
        envelope("proof", proof)
    }
}

impl Bounded for TerminateEntity {
    fn check_bounds(&self) -> Result<(), String> {
        let TerminateEntity { id, reason } = self;
        ID.check("id", id)?;
        opt_text("reason", reason, ids::MAX_TEXT)
    }
}

impl Bounded for IdentifyContainer {
    fn check_bounds(&self) -> Result<(), String> {
        let IdentifyContainer {
            container_id,
            org,
            image,
            digest,
            publisher_signature,
            certificate,
            nonce,
            proof,
        } = self;
        ID.check("container_id", container_id)?;
        ID.check("org", org)?;
        text("image", image, ids::MAX_TEXT)?;
        ascii("digest", digest, ids::DIGEST_LEN)?;
        if let Some(PublisherSignature {
            publisher,
            signature: sig,
        }) = publisher_signature
        {
            ID.check("publisher_signature.publisher", publisher)?;
            signature("publisher_signature.signature", sig)?;
        }
        if let Some(nonce) = nonce {
            NONCE.check("nonce", nonce)?;
        }
        if let Some(proof) = proof {
            envelope("proof", proof)?;
        }
        certificate
            .as_deref()
            .map_or(Ok(()), |c| pem("certificate", c))
    }
}

impl Bounded for PlaceContainer {
    fn check_bounds(&self) -> Result<(), String> {
        let PlaceContainer {
            container_id,
            device_id,
        } = self;
        ID.check("container_id", container_id)?;
        ID.check("device_id", device_id)
    }
}

impl Bounded for RecordOutcome {
    fn check_bounds(&self) -> Result<(), String> {
        let RecordOutcome {
            container_id,
            action,
            authorising_tx,
            outcome,
            detail,
        } = self;
        ID.check("container_id", container_id)?;
        ascii("action", action.as_str(), 16)?;
        TX_ID.check("authorising_tx", authorising_tx)?;
        ascii("outcome", outcome.as_str(), 16)?;
        ids::check_optional_text("detail", detail, ids::MAX_DETAIL)
    }
}

impl Bounded for RecordDrift {
    fn check_bounds(&self) -> Result<(), String> {
        let RecordDrift {
            service,
            container_id,
            description,
            action_taken,
            placement_status: _,
            authorising_tx,
            device_id,
            device_status: _,
        } = self;
        text("service", service, ids::MAX_NAME)?;
        opt_id("container_id", container_id)?;
        text("description", description, ids::MAX_TEXT)?;
        opt_text("action_taken", action_taken, ids::MAX_TEXT)?;
        if let Some(tx) = authorising_tx {
            TX_ID.check("authorising_tx", tx)?;
        }
        opt_id("device_id", device_id)
    }
}

impl Bounded for DefineContract {
    fn check_bounds(&self) -> Result<(), String> {
        let DefineContract {
            contract_id,
            contractor,
            uses,
            generates,
            deadline,
        } = self;
        ID.check("contract_id", contract_id)?;
        ID.check("contractor", contractor)?;
        list("uses", uses, ids::MAX_LIST, |UseClause { kind, source }| {
            ID.check("uses.kind", kind)?;
            opt_id("uses.source", source)
        })?;
        list(
            "generates",
            generates,
            ids::MAX_LIST,
            |GenerateClause { kind }| ID.check("generates.kind", kind),
        )?;
        short("deadline", deadline, ids::MAX_TIMESTAMP)
    }
}

impl Bounded for EvaluateContract {
    fn check_bounds(&self) -> Result<(), String> {
        let EvaluateContract { contract_id } = self;
        ID.check("contract_id", contract_id)
    }
}

impl Bounded for RecordData {
    fn check_bounds(&self) -> Result<(), String> {
        let RecordData {
            data_id,
            kind,
            hash,
            size: _,
            location,
            generated_by,
            derived_from,
            claim,
        } = self;
        ID.check("data_id", data_id)?;
        ID.check("kind", kind)?;
        ascii("hash", hash, ids::DIGEST_LEN)?;
        text("location", location, ids::MAX_TEXT)?;
        ID.check("generated_by", generated_by)?;
        list("derived_from", derived_from, ids::MAX_LIST, |d| {
            ID.check("derived_from", d)
        })?;
        envelope("claim", claim)
    }
}

impl Bounded for ExecContract {
    fn check_bounds(&self) -> Result<(), String> {
        let ExecContract {
            contract_id,
            data_id,
        } = self;
        ID.check("contract_id", contract_id)?;
        ID.check("data_id", data_id)
    }
}

impl Bounded for ById {
    fn check_bounds(&self) -> Result<(), String> {
        let ById { id } = self;
        ID.check("id", id)
    }
}

impl Bounded for LineageQuery {
    fn check_bounds(&self) -> Result<(), String> {
        let LineageQuery {
            id,
            direction: _,
            depth: _,
            limit: _,
            fan_out: _,
            bookmark,
        } = self;
        ID.check("id", id)?;
        // Depth, limit and fan-out are checked by the query itself, with their defaults.
        if let Some(bookmark) = bookmark {
            let max = crate::queries::MAX_LINEAGE_BOOKMARK;
            if bookmark.len() > max {
                return Err(format!(
                    "bookmark is {} bytes; at most {max} are allowed",
                    bookmark.len()
                ));
            }
        }
        Ok(())
    }
}

impl Bounded for RecordsQuery {
    fn check_bounds(&self) -> Result<(), String> {
        let RecordsQuery {
            agent,
            entity,
            from,
            to,
            page_size: _,
            bookmark,
        } = self;
        if let Some(agent) = agent {
            AGENT.check("agent", agent)?;
        }
        opt_id("entity", entity)?;
        if let Some(from) = from {
            short("from", from, ids::MAX_TIMESTAMP)?;
        }
        if let Some(to) = to {
            short("to", to, ids::MAX_TIMESTAMP)?;
        }
        if let Some(bookmark) = bookmark {
            if bookmark.len() > ids::MAX_BOOKMARK {
                return Err(format!(
                    "bookmark is {} bytes; at most {} are allowed",
                    bookmark.len(),
                    ids::MAX_BOOKMARK
                ));
            }
        }
        Ok(())
    }
}

fn opt_bookmark(value: &Option<String>) -> Result<(), String> {
    match value {
        Some(b) if b.len() > ids::MAX_BOOKMARK => Err(format!(
            "bookmark is {} bytes; at most {} are allowed",
            b.len(),
            ids::MAX_BOOKMARK
        )),
        _ => Ok(()),
    }
}

impl Bounded for DevicesQuery {
    fn check_bounds(&self) -> Result<(), String> {
        let DevicesQuery {
            org,
            state: _,
            page_size: _,
            bookmark,
        } = self;
        opt_id("org", org)?;
        opt_bookmark(bookmark)
    }
}

impl Bounded for ContainersQuery {
    fn check_bounds(&self) -> Result<(), String> {
        let ContainersQuery {
            device,
            org,
            state: _,
            page_size: _,
            bookmark,
        } = self;
        opt_id("device", device)?;
        opt_id("org", org)?;
        opt_bookmark(bookmark)
    }
}

impl Bounded for ContractsQuery {
    fn check_bounds(&self) -> Result<(), String> {
        let ContractsQuery {
            state: _,
            page_size: _,
            bookmark,
        } = self;
        opt_bookmark(bookmark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        assert!(check_unique_keys(br#"{"a":1,"b":{"c":[{"d":1,"e":2}]}}"#).is_ok());
        let e = check_unique_keys(br#"{"a":1,"a":2}"#).unwrap_err();
        assert!(e.contains("duplicate key \"a\""), "{e}");
        assert!(
            check_unique_keys(br#"{"a":{"policy":{"publishers":{"p":"x","p":"y"}}}}"#).is_err()
        );
        assert!(check_unique_keys(br#"[{"k":1},{"k":1,"k":2}]"#).is_err());
        assert!(check_unique_keys(br#"{"a":1} x"#).is_err());
        // Deep nesting is an error, not a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(check_unique_keys(deep.as_bytes()).is_err());
    }

    #[test]
    fn drift_fields_are_bounded() {
        let drift = |action: &str| {
            format!(r#"{{"service":"s","description":"d","action_taken":"{action}"}}"#)
        };
        assert!(decode::<RecordDrift>(drift("removed").as_bytes()).is_ok());
        let e = decode::<RecordDrift>(drift(&"x".repeat(900_000)).as_bytes()).unwrap_err();
        assert!(e.contains("action_taken is 900000 bytes"), "{e}");
        let e = decode::<RecordDrift>(drift("a\\u0000\\u001b").as_bytes()).unwrap_err();
        assert!(e.contains("action_taken contains"), "{e}");
    }
}
