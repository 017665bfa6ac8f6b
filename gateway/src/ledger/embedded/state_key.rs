//! How a world-state key is stored (format 5): the contract's composite keys, packed.
//!
//! The contract's keys are Fabric composite keys (`\0type\0attribute\0…\0`), readable and the
//! same on Fabric, but wide: the time-ordered record indexes repeat a 12-byte type name, a
//! 20-digit timestamp and a 64-hex transaction id in every key, and keys were about half of the
//! world state's bytes (the scale bench's "state by object type"). The store keeps each key
//! packed and gives the contract the key it wrote back, so nothing above the store changes:
//!
//! * a key that is not composite (does not start with `\0`) is stored as it is;
//! * a composite key is `0x00`, then its type: one byte for each of the contract's types
//!   ([`TYPE_CODES`]), or `0x80 ‖ name ‖ 0x00` for any other;
//! * then each attribute (`…\0`-terminated): where the contract's layout puts a transaction id or
//!   a certificate hash (64 lowercase hex digits) it is `0x01 ‖ 32 bytes`; where it puts a
//!   sortable timestamp (20 decimal digits) it is `0x02 ‖ u64 big-endian`; any other attribute,
//!   and one of those that does not have its form, is `0x03 ‖ attribute ‖ 0x00`;
//! * a range bound may end in a partial attribute: `U+10FFFF` (the end of a partial-key range)
//!   is `0xFF`, anything else `0x03 ‖ bytes` without the terminator.
//!
//! # What it keeps
//!
//! **Invariant:** the packing is one-to-one ([`unpack`] inverts [`pack`], and a stored key that
//! is not a packing is refused by name) and it keeps the order of keys of one type whose
//! attributes have their layout's form, which is every key the contract writes: a partial-key
//! range `[prefix, prefix + U+10FFFF)`, a time range and a bookmark seek find the same keys in
//! the same order as on Fabric. Fixed-width hex and decimal pack to fixed-width big-endian bytes
//! in the same order; a raw attribute keeps its bytes and its terminator; `0xFF` sorts after
//! every attribute marker as `U+10FFFF` sorts after every attribute character. What changes is
//! the order *between* types (by code, not by name), which no contract range crosses.
//!
//! A type's code and attribute layout are part of the storage format: codes are never reused
//! or renumbered, a new type takes the next code (an uncoded type is stored with its name, so
//! forgetting one costs bytes, never correctness).

use tom_contract::keys;

/// What one attribute position of a type holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attribute {
    /// Anything: a caller-chosen id, a state name.
    Raw,
    /// 64 lowercase hex digits: a transaction id or a certificate's SHA-256.
    Hex64,
    /// 20 decimal digits: [`tom_contract::Timestamp::sortable`].
    Sortable,
}

use Attribute::{Hex64, Raw, Sortable};

/// The contract's types, in code order (code = index + 1), with the layout of their attributes
/// (positions past the layout are [`Attribute::Raw`]). Append only.
const TYPE_CODES: &[(&str, &[Attribute])] = &[
    (keys::ORG, &[]),
    (keys::ENTITY, &[]),
    (keys::CONTRACT, &[]),
    (keys::CREDENTIAL, &[]),
    (keys::RECORD, &[Hex64]),
    (keys::NONCE, &[]),
    (keys::IDENTITY_BINDING, &[Hex64]),
    (keys::PLACED_ON, &[]),
    (keys::USED, &[]),
    (keys::DERIVED, &[]),
    (keys::GENERATED, &[]),
    (keys::CONTRACT_BY_CONTRACTOR, &[]),
    (keys::BY_TIME, &[Sortable, Hex64]),
    (keys::BY_AGENT, &[Raw, Sortable, Hex64]),
    (keys::BY_ENTITY, &[Raw, Sortable, Hex64]),
    (keys::DEVICE_BY_STATE, &[]),
    (keys::CONTAINER_BY_STATE, &[]),
    (keys::CONTRACT_BY_STATE, &[]),
];

const NAMESPACE: u8 = 0x00;
const UNCODED_TYPE: u8 = 0x80;
const HEX64: u8 = 0x01;
const SORTABLE: u8 = 0x02;
const RAW: u8 = 0x03;
const END_OF_RANGE: u8 = 0xFF;
const MAX_RUNE_UTF8: &[u8] = "\u{10FFFF}".as_bytes();

/// The stored form of `key` (see the module documentation). Also what range bounds are packed
/// with.
pub fn pack(key: &str) -> Vec<u8> {
    let bytes = key.as_bytes();
    let Some(body) = bytes.strip_prefix(&[NAMESPACE]) else {
        return bytes.to_vec();
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.push(NAMESPACE);
    let mut parts = body.split(|b| *b == NAMESPACE);
    // `split` yields the text after the last `\0` last: empty for a whole key, a partial part
    // for a range bound.
    let mut part = parts.next().unwrap_or_default();
    let mut position: Option<usize> = None;
    let mut layout: &[Attribute] = &[];
    loop {
        let next = parts.next();
        let Some(following) = next else {
            // `part` is the tail: not followed by `\0`.
            if part == MAX_RUNE_UTF8 {
                out.push(END_OF_RANGE);
            } else if !part.is_empty() {
                out.push(if position.is_none() {
                    UNCODED_TYPE
                } else {
                    RAW
                });
                out.extend_from_slice(part);
            }
            return out;
        };
        match position {
            None => match code_of(part) {
                Some((code, attributes)) => {
                    out.push(code);
                    layout = attributes;
                }
                None => {
                    out.push(UNCODED_TYPE);
                    out.extend_from_slice(part);
                    out.push(NAMESPACE);
                }
            },
            Some(i) => match (layout.get(i).copied().unwrap_or(Raw), part) {
                (Hex64, part) if is_lower_hex_64(part) => {
                    out.push(HEX64);
                    let mut packed = [0u8; 32];
                    hex::decode_to_slice(part, &mut packed).expect("checked: 64 hex digits");
                    out.extend_from_slice(&packed);
                }
                (Sortable, part) if sortable_value(part).is_some() => {
                    out.push(SORTABLE);
                    let n = sortable_value(part).expect("checked");
                    out.extend_from_slice(&n.to_be_bytes());
                }
                _ => {
                    out.push(RAW);
                    out.extend_from_slice(part);
                    out.push(NAMESPACE);
                }
            },
        }
        position = Some(position.map_or(0, |i| i + 1));
        part = following;
    }
}

/// The key whose stored form is `stored` ([`pack`] inverted); an error saying what is wrong if
/// `stored` is not a packed key.
pub fn unpack(stored: &[u8]) -> Result<String, String> {
    let Some(mut rest) = stored.strip_prefix(&[NAMESPACE]) else {
        return String::from_utf8(stored.to_vec())
            .map_err(|_| format!("stored key {} is not UTF-8", hex::encode(stored)));
    };
    let damaged = |why: &str| format!("stored key {} is damaged: {why}", hex::encode(stored));
    let mut key = Vec::with_capacity(stored.len() * 2);
    key.push(NAMESPACE);
    // The type.
    let layout: &[Attribute] = match rest.split_first() {
        None => return Ok("\0".to_owned()),
        Some((&END_OF_RANGE, [])) => {
            key.extend_from_slice(MAX_RUNE_UTF8);
            return utf8(key, &damaged);
        }
        Some((&UNCODED_TYPE, after)) => match after.iter().position(|b| *b == NAMESPACE) {
            Some(end) => {
                key.extend_from_slice(&after[..=end]);
                rest = &after[end + 1..];
                &[]
            }
            None => {
                key.extend_from_slice(after);
                return utf8(key, &damaged);
            }
        },
        Some((&code, after)) => {
            let (name, attributes) = TYPE_CODES
                .get(usize::from(code).wrapping_sub(1))
                .ok_or_else(|| damaged(&format!("unknown type code {code}")))?;
            key.extend_from_slice(name.as_bytes());
            key.push(NAMESPACE);
            rest = after;
            attributes
        }
    };
    let mut position = 0usize;
    while let Some((&marker, after)) = rest.split_first() {
        match marker {
            HEX64 => {
                let packed = after
                    .get(..32)
                    .ok_or_else(|| damaged("a transaction id shorter than 32 bytes"))?;
                if layout.get(position) != Some(&Hex64) {
                    return Err(damaged(&format!("a hex attribute at position {position}")));
                }
                key.extend_from_slice(hex::encode(packed).as_bytes());
                key.push(NAMESPACE);
                rest = &after[32..];
            }
            SORTABLE => {
                let packed = after
                    .get(..8)
                    .ok_or_else(|| damaged("a timestamp shorter than 8 bytes"))?;
                if layout.get(position) != Some(&Sortable) {
                    return Err(damaged(&format!("a timestamp at position {position}")));
                }
                let n = u64::from_be_bytes(packed.try_into().expect("8 bytes"));
                key.extend_from_slice(format!("{n:020}").as_bytes());
                key.push(NAMESPACE);
                rest = &after[8..];
            }
            RAW => match after.iter().position(|b| *b == NAMESPACE) {
                Some(end) => {
                    key.extend_from_slice(&after[..=end]);
                    rest = &after[end + 1..];
                }
                None => {
                    key.extend_from_slice(after);
                    return utf8(key, &damaged);
                }
            },
            END_OF_RANGE if after.is_empty() => {
                key.extend_from_slice(MAX_RUNE_UTF8);
                return utf8(key, &damaged);
            }
            other => return Err(damaged(&format!("unknown attribute marker {other:#04x}"))),
        }
        position += 1;
    }
    utf8(key, &damaged)
}

fn utf8(key: Vec<u8>, damaged: &dyn Fn(&str) -> String) -> Result<String, String> {
    String::from_utf8(key).map_err(|_| damaged("not UTF-8 once unpacked"))
}

fn code_of(type_name: &[u8]) -> Option<(u8, &'static [Attribute])> {
    TYPE_CODES
        .iter()
        .position(|(name, _)| name.as_bytes() == type_name)
        .map(|i| {
            (
                u8::try_from(i + 1).expect("fewer than 128 types"),
                TYPE_CODES[i].1,
            )
        })
}

/// 64 lowercase hex digits: how the ledger writes transaction ids and certificate hashes.
pub(super) fn is_lower_hex_64(part: &[u8]) -> bool {
    part.len() == 64 && part.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The number a 20-digit sortable timestamp spells, if `part` is one that fits a `u64` (the
/// packing must give back the same 20 digits).
fn sortable_value(part: &[u8]) -> Option<u64> {
    if part.len() != 20 || !part.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(part).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tom_contract::ledger::create_composite_key;

    const TX_A: &str = "00aa11bb22cc33dd44ee55ff66778899aabbccddeeff00112233445566778899";
    const TX_B: &str = "f0aa11bb22cc33dd44ee55ff66778899aabbccddeeff00112233445566778899";

    fn ck(t: &str, attrs: &[&str]) -> String {
        create_composite_key(t, attrs).unwrap()
    }

    fn sample_keys() -> Vec<String> {
        let t1 = "00000001700000000000";
        let t2 = "00000001700000000001";
        let t3 = "00000009999999999999";
        let mut out = vec![
            String::new(),
            "simple".into(),
            "a\u{10FFFF}".into(),
            "\0".into(),
            "\0\u{10FFFF}".into(),
            "\0partial-type".into(),
            ck("other.type", &["x", TX_A]),
            ck(keys::RECORD, &[TX_A]),
            ck(keys::RECORD, &[TX_B]),
            ck(keys::RECORD, &["not-a-tx-id"]),
            ck(keys::ENTITY, &["device-1"]),
            ck(keys::ENTITY, &[""]),
            ck(keys::ENTITY, &["dévice-é"]),
            ck(keys::BY_TIME, &[t1, TX_A]),
            ck(keys::BY_TIME, &[t1, TX_B]),
            ck(keys::BY_TIME, &[t2, TX_A]),
            ck(keys::BY_TIME, &[t3]),
            ck(keys::BY_TIME, &["99999999999999999999", TX_A]),
            ck(keys::BY_TIME, &[]),
            ck(keys::IDENTITY_BINDING, &[TX_B]),
        ];
        for agent in ["a", "ab", "b", "device-7", "x\u{10FFFE}"] {
            for t in [t1, t2, t3] {
                for tx in [TX_A, TX_B] {
                    out.push(ck(keys::BY_AGENT, &[agent, t, tx]));
                    out.push(ck(keys::BY_ENTITY, &[agent, t, tx]));
                }
                out.push(ck(keys::BY_AGENT, &[agent, t]));
            }
            out.push(ck(keys::BY_AGENT, &[agent]));
            out.push(format!("{}\u{10FFFF}", ck(keys::BY_AGENT, &[agent])));
            out.push(format!("{}{agent}", ck(keys::BY_AGENT, &[])));
        }
        out
    }

    #[test]
    fn packing_round_trips() {
        for key in sample_keys() {
            let packed = pack(&key);
            assert_eq!(unpack(&packed).as_deref(), Ok(key.as_str()), "{key:?}");
        }
    }

    #[test]
    fn packing_is_narrower_for_the_record_indexes() {
        let key = ck(keys::BY_AGENT, &["device-7", "00000001700000000000", TX_A]);
        assert_eq!(key.len(), 1 + 13 + 9 + 21 + 65);
        assert_eq!(pack(&key).len(), 1 + 1 + 10 + 9 + 33);
    }

    /// The order of two keys of one type is kept, and so is every range bound the contract
    /// builds (a partial key, a partial key followed by U+10FFFF).
    #[test]
    fn packing_keeps_order_within_a_type() {
        let keys = sample_keys();
        let type_of = |k: &str| {
            k.strip_prefix('\0')
                .and_then(|b| b.split_once('\0'))
                .map(|(t, _)| t.to_owned())
        };
        let mut compared = 0;
        for a in &keys {
            for b in &keys {
                let (Some(ta), Some(tb)) = (type_of(a), type_of(b)) else {
                    continue;
                };
                // Layout-breaking attributes (a non-hex record id, a 99…9 time) only round-trip.
                if ta != tb || a.contains("not-a-tx-id") || b.contains("not-a-tx-id") {
                    continue;
                }
                assert_eq!(
                    a.as_bytes().cmp(b.as_bytes()),
                    pack(a).cmp(&pack(b)),
                    "{a:?} vs {b:?}"
                );
                compared += 1;
            }
        }
        assert!(compared > 1000, "{compared}");
    }

    #[test]
    fn simple_keys_sort_after_composite_ones_as_before() {
        assert!(pack("a") > pack(&ck(keys::ENTITY, &["z"])));
        assert_eq!(pack("plain key"), b"plain key");
    }

    #[test]
    fn damaged_stored_keys_are_named() {
        let mut packed = pack(&ck(keys::BY_TIME, &["00000001700000000000", TX_A]));
        packed.truncate(packed.len() - 3);
        let e = unpack(&packed).unwrap_err();
        assert!(
            e.contains("shorter than 32 bytes") && e.contains("damaged"),
            "{e}"
        );
        let e = unpack(&[0, 99, 3, b'x', 0]).unwrap_err();
        assert!(e.contains("unknown type code 99"), "{e}");
        let e = unpack(&[0, 2, 0x07]).unwrap_err();
        assert!(e.contains("unknown attribute marker 0x07"), "{e}");
        // A timestamp where the entity's layout has none.
        let e = unpack(&[0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 1]).unwrap_err();
        assert!(e.contains("a timestamp at position 0"), "{e}");
    }

    #[test]
    fn type_codes_are_unique() {
        for (i, (a, _)) in TYPE_CODES.iter().enumerate() {
            for (b, _) in &TYPE_CODES[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(TYPE_CODES.len() < usize::from(UNCODED_TYPE));
    }
}
