//! How a Fabric Gateway failure becomes a [`LedgerError`].
//!
//! The Gateway service reports failures as a gRPC status whose details (a `google.rpc.Status`)
//! carry one `gateway.ErrorDetail` per peer or orderer that failed: its address, MSP id and
//! message. When the contract refused a transaction, the peer's message reads
//! `chaincode response <status>, <message>`; that status and message are what the caller must
//! see, exactly as the embedded ledger would report them. Everything else is either "try again"
//! (the network) or a failure of ours.

use prost::Message;
use tonic::Code;

use super::protos::{gateway, peer};
use crate::ledger::LedgerError;

/// One failing node, as the Gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError {
    pub address: String,
    pub msp_id: String,
    pub message: String,
}

/// The `gateway.ErrorDetail` entries of a status, in order.
pub fn error_details(status: &tonic::Status) -> Vec<NodeError> {
    let Ok(rpc_status) = tonic_types::pb::Status::decode(status.details()) else {
        return Vec::new();
    };
    rpc_status
        .details
        .iter()
        .filter(|any| any.type_url.ends_with("/gateway.ErrorDetail"))
        .filter_map(|any| gateway::ErrorDetail::decode(any.value.as_slice()).ok())
        .map(|d| NodeError {
            address: d.address,
            msp_id: d.msp_id,
            message: d.message,
        })
        .collect()
}

/// `(status, message)` from a peer's "chaincode response 404, no such org" message.
pub fn chaincode_response(message: &str) -> Option<(u16, String)> {
    let rest = &message[message.find("chaincode response ")? + "chaincode response ".len()..];
    let (status, message) = rest.split_once(", ").unwrap_or((rest, ""));
    Some((status.trim().parse().ok()?, message.to_owned()))
}

/// Maps a failed Gateway call (`what`: "evaluate GetOrg", "endorse RegisterOrg" …).
pub fn from_status(what: &str, status: &tonic::Status) -> LedgerError {
    let details = error_details(status);
    // The contract's own refusal wins: it is the answer to the caller's request. Every endorser
    // runs the same deterministic contract, so the first refusal speaks for all of them.
    let refusal = details
        .iter()
        .map(|d| d.message.as_str())
        .chain(std::iter::once(status.message()))
        .find_map(chaincode_response);
    if let Some((code, message)) = refusal {
        return match code {
            400..=499 => LedgerError::Rejected {
                status: code,
                message,
            },
            _ => LedgerError::Internal(format!(
                "{what}: the contract failed with status {code}: {message}"
            )),
        };
    }
    let mut text = format!("{what}: {} ({:?})", status.message(), status.code());
    for d in &details {
        text.push_str(&format!("; {} ({}): {}", d.address, d.msp_id, d.message));
    }
    // The peer's Gateway throttle (peer.limits.concurrency.gatewayService) answers with code
    // Unknown, yet it is as transient as any overload: nothing was endorsed, retry later.
    if status.code() == Code::Unknown && status.message().contains("exceeding concurrency limit") {
        return LedgerError::Unavailable(text);
    }
    // With an organisation's every peer down, the Gateway finds no endorsement plan and answers
    // FailedPrecondition (seen on Fabric 2.5.12 with Org2's only peer stopped): an outage, not
    // a request the caller could fix.
    if status.code() == Code::FailedPrecondition
        && status
            .message()
            .contains("no combination of peers can be derived")
    {
        return LedgerError::Unavailable(text);
    }
    match status.code() {
        // Nothing was recorded; the same call may succeed later (a peer or orderer was down,
        // endorsements could not be collected in time, the connection broke).
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::ResourceExhausted
        | Code::Cancelled => LedgerError::Unavailable(text),
        // The channel's policies do not let this identity in: the caller's business, like a
        // contract-level 403.
        Code::PermissionDenied | Code::Unauthenticated => LedgerError::Rejected {
            status: 403,
            message: text,
        },
        _ => LedgerError::Internal(text),
    }
}

/// The name Fabric gives a transaction validation code (`MVCC_READ_CONFLICT` …).
pub fn validation_code_name(code: i32) -> String {
    peer::TxValidationCode::try_from(code)
        .map(|c| c.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("unknown validation code {code}"))
}

/// A transport error with its causes ("transport error: tcp connect error: Connection refused").
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_with_details(
        code: Code,
        message: &str,
        details: &[(&str, &str, &str)],
    ) -> tonic::Status {
        let details = details
            .iter()
            .map(|(address, msp_id, message)| prost_types::Any {
                type_url: "type.googleapis.com/gateway.ErrorDetail".into(),
                value: gateway::ErrorDetail {
                    address: (*address).into(),
                    msp_id: (*msp_id).into(),
                    message: (*message).into(),
                }
                .encode_to_vec(),
            })
            .collect();
        let rpc = tonic_types::pb::Status {
            code: code as i32,
            message: message.into(),
            details,
        };
        tonic::Status::with_details(code, message, rpc.encode_to_vec().into())
    }

    #[test]
    fn check_mapping() {
        let check = |status: tonic::Status, expected: LedgerError| {
            assert_eq!(from_status("endorse X", &status), expected)
        };
        check(
            status_with_details(
                Code::Aborted,
                "failed to endorse transaction, see attached details for more info",
                &[(
                    "peer0.org1:7051",
                    "Org1MSP",
                    "chaincode response 404, org Org9MSP is not registered",
                )],
            ),
            LedgerError::Rejected {
                status: 404,
                message: "org Org9MSP is not registered".into(),
            },
        );
        check(
            tonic::Status::unknown("evaluate call to endorser returned error: chaincode response 403, caller lacks role"),
            LedgerError::Rejected { status: 403, message: "caller lacks role".into() },
        );
        check(
            status_with_details(
                Code::Aborted,
                "failed",
                &[("p:1", "Org1MSP", "chaincode response 500, boom")],
            ),
            LedgerError::Internal("endorse X: the contract failed with status 500: boom".into()),
        );
        check(
            status_with_details(
                Code::Unavailable,
                "no peers",
                &[("p:1", "Org2MSP", "connection refused")],
            ),
            LedgerError::Unavailable(
                "endorse X: no peers (Unavailable); p:1 (Org2MSP): connection refused".into(),
            ),
        );
        check(
            tonic::Status::permission_denied("access denied"),
            LedgerError::Rejected {
                status: 403,
                message: "endorse X: access denied (PermissionDenied)".into(),
            },
        );
        check(
            tonic::Status::invalid_argument("bad proposal"),
            LedgerError::Internal("endorse X: bad proposal (InvalidArgument)".into()),
        );
    }

    #[test]
    fn the_gateway_concurrency_limit_is_transient() {
        let status = tonic::Status::new(
            Code::Unknown,
            "too many requests for /gateway.Gateway, exceeding concurrency limit (500)",
        );
        assert!(
            matches!(from_status("endorse X via https://peer:7051", &status), LedgerError::Unavailable(m) if m.contains("concurrency limit"))
        );
    }

    #[test]
    fn no_endorsement_plan_is_an_outage() {
        // Fabric 2.5.12's Gateway, Org2's only peer stopped.
        let status = tonic::Status::new(
            Code::FailedPrecondition,
            "no combination of peers can be derived which satisfy the endorsement policy: no peer combination can satisfy the endorsement policy",
        );
        assert!(matches!(
            from_status("endorse X via https://peer:7051", &status),
            LedgerError::Unavailable(m) if m.contains("no combination of peers")
        ));
        assert!(matches!(
            from_status("endorse X", &tonic::Status::failed_precondition("other")),
            LedgerError::Internal(_)
        ));
    }

    #[test]
    fn chaincode_response_parses_status_and_message() {
        assert_eq!(
            chaincode_response("chaincode response 409, a, b"),
            Some((409, "a, b".into()))
        );
        assert_eq!(
            chaincode_response("chaincode response 400"),
            Some((400, String::new()))
        );
        assert_eq!(chaincode_response("chaincode response x, y"), None);
        assert_eq!(chaincode_response("connection refused"), None);
    }

    #[test]
    fn validation_codes_have_fabric_names() {
        assert_eq!(validation_code_name(11), "MVCC_READ_CONFLICT");
        assert_eq!(validation_code_name(9), "DUPLICATE_TXID");
        assert_eq!(validation_code_name(77), "unknown validation code 77");
    }
}
