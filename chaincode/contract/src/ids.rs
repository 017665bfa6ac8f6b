//! The one grammar of everything that reaches a world-state key or a URL, and the bounds of
//! every free-text field. The contract checks requests against it ([`crate::bounds`]), the
//! gateway checks path and query parameters against it before any ledger call, and the OpenAPI
//! document states it (`pattern`, `maxLength`), all from the constants here.
//!
//! | grammar | rule | used for |
//! |---|---|---|
//! | [`ID`] | `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$` | device, container, data, contract, org (MSP) ids, kinds, publisher names, transaction ids |
//! | [`AGENT`] | `<msp id>/<common name>`, the name `^[A-Za-z0-9][A-Za-z0-9 ._@+=:-]{0,63}$` | agents (creators of records) |
//! | [`NONCE`] | `^[A-Za-z0-9][A-Za-z0-9._~+/=:-]{0,127}$` | device id-proof nonces |
//!
//! The first character of an id is a letter or digit, so `.` and `..` (which a URL path
//! normalises away) can never be ids; none of the grammars admits the composite-key separator
//! `\0` or the range end U+10FFFF. Transaction ids are ids: Fabric's and TOM's ledgers use
//! 64 lowercase hex digits, which the grammar includes.
//!
//! Free text (reasons, descriptions, locations, image references, details) is 1 to
//! [`MAX_TEXT`] bytes (unless a field documents another bound) with no control characters
//! (`Cc`: `\0`, `\t`, `\n`, ESC, DEL, ...) and no Unicode noncharacters (U+FFFE, U+10FFFF, ...).

/// Longest id, in bytes (all id characters are ASCII).
pub const MAX_ID_LEN: usize = 128;
/// Longest common name in an agent id (X.509's upper bound for commonName).
pub const MAX_COMMON_NAME_LEN: usize = 64;
/// Longest agent id: `<msp id>/<common name>`.
pub const MAX_AGENT_LEN: usize = MAX_ID_LEN + 1 + MAX_COMMON_NAME_LEN;
/// Longest nonce.
pub const MAX_NONCE_LEN: usize = 128;
/// Longest free-text field, in bytes, unless the field says otherwise.
pub const MAX_TEXT: usize = 1024;
/// Longest `RecordOutcome.detail` (an orchestrator's error message), in bytes.
pub const MAX_DETAIL: usize = 4096;
/// Longest organisation display name and orchestrator-side service name, in bytes.
pub const MAX_NAME: usize = 256;
/// Longest PEM certificate, in bytes.
pub const MAX_PEM: usize = 8192;
/// Longest base64 signature or proof (a DER ECDSA P-256 signature is at most 72 bytes).
pub const MAX_SIGNATURE: usize = 256;
/// Longest `sha256:<hex>` digest text.
pub const DIGEST_LEN: usize = 71;
/// Most CA certificates of an organisation.
pub const MAX_CA_CERTIFICATES: usize = 8;
/// Most trusted publishers in an organisation's policy.
pub const MAX_PUBLISHERS: usize = 16;
/// Most entries of a list field (`derived_from`, `uses`, `generates`).
pub const MAX_LIST: usize = 64;
/// Longest query bookmark, in bytes (bookmarks are composite keys the previous page returned).
pub const MAX_BOOKMARK: usize = 1024;
/// Longest RFC 3339 timestamp text.
pub const MAX_TIMESTAMP: usize = 64;

/// A grammar for one kind of identifier.
#[derive(Debug, Clone, Copy)]
pub struct Grammar {
    /// What it names, for messages.
    pub name: &'static str,
    /// The ECMA-262 / OpenAPI regular expression stating the rule exactly.
    pub pattern: &'static str,
    pub max_len: usize,
    /// Every character that may appear somewhere besides ASCII letters and digits.
    punctuation: &'static str,
    check: fn(&str) -> bool,
}

impl Grammar {
    /// Whether `text` is in the grammar.
    pub fn matches(&self, text: &str) -> bool {
        (self.check)(text)
    }

    /// `Ok` or a message naming `field`, the offending value (escaped and shortened) and the rule.
    pub fn check(&self, field: &str, text: &str) -> Result<(), String> {
        if self.matches(text) {
            return Ok(());
        }
        let stray = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || self.punctuation.contains(*c)));
        if let Some(c) = stray {
            Err(format!(
                "{field} {} contains {c:?}; a {} must match {} (at most {} bytes)",
                shown(text),
                self.name,
                self.pattern,
                self.max_len
            ))
        } else {
            Err(format!(
                "{field} {} is not a valid {}: it must match {} (at most {} bytes)",
                shown(text),
                self.name,
                self.pattern,
                self.max_len
            ))
        }
    }
}

/// Entity, contract, organisation and transaction ids, kinds and publisher names.
pub const ID: Grammar = Grammar {
    name: "id",
    pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
    max_len: MAX_ID_LEN,
    punctuation: "._-",
    check: is_id,
};

/// `<msp id>/<common name>`: who created a record.
pub const AGENT: Grammar = Grammar {
    name: "agent id (<msp id>/<common name>)",
    pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}/[A-Za-z0-9][A-Za-z0-9 ._@+=:-]{0,63}$",
    max_len: MAX_AGENT_LEN,
    punctuation: "._-/ @+=:",
    check: is_agent,
};

/// A device's single-use id-proof nonce.
pub const NONCE: Grammar = Grammar {
    name: "nonce",
    pattern: "^[A-Za-z0-9][A-Za-z0-9._~+/=:-]{0,127}$",
    max_len: MAX_NONCE_LEN,
    punctuation: "._~+/=:-",
    check: is_nonce,
};

/// Transaction ids follow the id grammar.
pub const TX_ID: Grammar = Grammar {
    name: "transaction id",
    ..ID
};

fn token(text: &str, max: usize, more: &[u8]) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || more.contains(b))
}

fn is_id(text: &str) -> bool {
    token(text, MAX_ID_LEN, b"._-")
}

/// A certificate common name as it may appear in an agent id.
pub fn is_common_name(text: &str) -> bool {
    token(text, MAX_COMMON_NAME_LEN, b" ._@+=:-")
}

fn is_agent(text: &str) -> bool {
    text.split_once('/')
        .is_some_and(|(msp, cn)| is_id(msp) && is_common_name(cn))
}

fn is_nonce(text: &str) -> bool {
    token(text, MAX_NONCE_LEN, b"._~+/=:-")
}

/// A character free text may not contain: control characters and Unicode noncharacters.
pub fn is_forbidden_in_text(c: char) -> bool {
    let n = c as u32;
    c.is_control() || (0xFDD0..=0xFDEF).contains(&n) || (n & 0xFFFE) == 0xFFFE
}

/// Free text: 1 to `max` bytes, not only whitespace, no control characters or noncharacters.
pub fn check_text(field: &str, text: &str, max: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    check_optional_text(field, text, max)
}

/// Like [`check_text`] but the empty string is allowed.
pub fn check_optional_text(field: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!(
            "{field} is {} bytes; at most {max} are allowed",
            text.len()
        ));
    }
    if let Some(bad) = text.chars().find(|c| is_forbidden_in_text(*c)) {
        return Err(format!(
            "{field} contains {bad:?} (U+{:04X}); control characters and noncharacters are not allowed",
            bad as u32
        ));
    }
    Ok(())
}

/// A short, escaped rendering of a rejected value for messages (never echo megabytes back).
pub fn shown(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head:?}… ({} bytes)", text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "A1", "edge-node_1.v2", "0", &"x".repeat(128)] {
            assert!(ID.matches(ok), "{ok:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "-a",
            "_a",
            "a/b",
            "a b",
            "a\0",
            "a\u{10FFFF}",
            "é",
            &"x".repeat(129),
        ] {
            assert!(!ID.matches(bad), "{bad:?}");
            assert!(ID.check("device_id", bad).is_err());
        }
        assert!(ID
            .check("device_id", "..")
            .unwrap_err()
            .contains("device_id \"..\""));
    }

    #[test]
    fn agents_and_nonces() {
        for ok in [
            "Org1MSP/Admin@org1.example.com",
            "DevOrgMSP/orchestrator",
            "A/b c",
        ] {
            assert!(AGENT.matches(ok), "{ok:?}");
        }
        for bad in [
            "",
            "Org1MSP",
            "/x",
            "Org1MSP/",
            "a/b/\0",
            "a/b\u{10FFFF}",
            "a/ b",
        ] {
            assert!(!AGENT.matches(bad), "{bad:?}");
        }
        for ok in ["n-1", "nonce-abc", "bXkgbm9uY2U=", "a+b/c"] {
            assert!(NONCE.matches(ok), "{ok:?}");
        }
        for bad in ["", "=x", "n\u{10FFFF}", "n\0", &"n".repeat(129)] {
            assert!(!NONCE.matches(bad), "{bad:?}");
        }
    }

    #[test]
    fn text() {
        assert!(check_text("reason", "node drained", MAX_TEXT).is_ok());
        assert!(check_text("reason", "Zürich ✓", MAX_TEXT).is_ok());
        assert!(check_text("reason", " ", MAX_TEXT).is_err());
        assert!(check_text("reason", "a\0b", MAX_TEXT).is_err());
        assert!(check_text("reason", "a\u{1b}[2J", MAX_TEXT).is_err());
        assert!(check_text("reason", "a\nb", MAX_TEXT).is_err());
        assert!(check_text("reason", "a\u{10FFFF}", MAX_TEXT).is_err());
        assert!(check_text("reason", "a\u{FFFE}", MAX_TEXT).is_err());
        assert!(check_text("reason", &"x".repeat(MAX_TEXT), MAX_TEXT).is_ok());
        assert!(check_text("reason", &"x".repeat(MAX_TEXT + 1), MAX_TEXT).is_err());
        assert!(check_optional_text("detail", "", MAX_DETAIL).is_ok());
        let long = "x".repeat(1_000_000);
        assert!(shown(&long).len() < 100);
    }
}
