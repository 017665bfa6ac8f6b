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

/// Phrases of a peer refusing the creator: `error validating proposal: access denied: channel
/// [tom] creator org unknown, creator is malformed` (an MSP the channel does not know),
/// `access denied: channel [tom] creator org [Org1MSP]` (an invalid certificate, or a signature
/// that does not verify, such as one with a high S), and the channel ACL's policy failures.
const CREATOR_REFUSED: &[&str] = &[
    "access denied",
    "creator org unknown",
    "creator is malformed",
    "signature set did not satisfy policy",
    "failed evaluating policy",
];

/// Phrases of failures that no retry can cure: the endorsers disagree (non-determinism), or the
/// peer refused the shape of what this client built.
const GIVE_UP: &[&str] = &[
    "ProposalResponsePayloads do not match",
    "incorrectly computed txid",
];

/// Maps a failed Gateway call (`what`: "evaluate GetOrg", "endorse RegisterOrg" …) by what the
/// caller can do about it:
///
/// - fix the request ([`LedgerError::Rejected`]): the contract refused it (its own 4xx status
///   and message), or the channel's policies refuse the creator (403: an MSP the channel does
///   not know, a certificate it does not trust, a signature that does not verify);
/// - give up ([`LedgerError::Internal`]): the contract failed (5xx), the endorsers disagree,
///   or the peer rejected the request's form (`InvalidArgument`, `Unimplemented`, …): a bug or a
///   misconfiguration, logged by the API;
/// - retry later ([`LedgerError::Unavailable`]): everything else a peer or the network says —
///   a peer, orderer or chaincode down or restarting, no endorsement plan while an organisation's
///   peers are down (`FailedPrecondition` "no combination of peers can be derived"), deadlines,
///   the Gateway's concurrency limit, a broken connection.
pub fn from_status(what: &str, status: &tonic::Status) -> LedgerError {
    let details = error_details(status);
    let messages = || {
        details
            .iter()
            .map(|d| d.message.as_str())
            .chain(std::iter::once(status.message()))
    };
    // The contract's own refusal wins: it is the answer to the caller's request. Every endorser
    // runs the same deterministic contract, so the first refusal speaks for all of them.
    if let Some((code, message)) = messages().find_map(chaincode_response) {
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
    let says = |phrases: &[&str]| messages().any(|m| phrases.iter().any(|p| m.contains(p)));
    if matches!(
        status.code(),
        Code::PermissionDenied | Code::Unauthenticated
    ) || says(CREATOR_REFUSED)
    {
        return LedgerError::Rejected {
            status: 403,
            message: format!("the channel's policies refuse the creator: {text}"),
        };
    }
    if says(GIVE_UP) {
        return LedgerError::Internal(text);
    }
    match status.code() {
        Code::InvalidArgument
        | Code::Unimplemented
        | Code::OutOfRange
        | Code::DataLoss
        | Code::NotFound
        | Code::AlreadyExists => LedgerError::Internal(text),
        // Unavailable, DeadlineExceeded, Aborted, ResourceExhausted, Cancelled,
        // FailedPrecondition, Unknown, Internal (a broken HTTP/2 stream), Ok without a body.
        _ => LedgerError::Unavailable(text),
    }
}

/// Whether a failed `Submit` certainly did not reach the ordering service: the connection to
/// the peer could not be made, or the peer's Gateway answered that it did not (or could not)
/// hand the transaction over. Anything else (a deadline, a connection broken mid-call) leaves
/// the outcome unknown.
pub fn submit_not_sent(status: &tonic::Status) -> bool {
    let message = status.message();
    let not_connected = status.code() == Code::Unavailable
        && [
            "tcp connect error",
            "error trying to connect",
            "Connection refused",
        ]
        .iter()
        .any(|p| message.contains(p));
    let gateway_said_no = matches!(
        status.code(),
        Code::InvalidArgument | Code::FailedPrecondition | Code::PermissionDenied
    ) || message.contains("no orderer nodes available")
        || message.contains("no orderers could successfully process transaction")
        || message.contains("received unsuccessful response from orderer")
        || message.contains("exceeding concurrency limit");
    not_connected || gateway_said_no
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
                message: "the channel's policies refuse the creator: endorse X: access denied (PermissionDenied)".into(),
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
            from_status(
                "endorse X",
                &tonic::Status::failed_precondition(
                    "no peers available to evaluate chaincode tom in channel tom"
                )
            ),
            LedgerError::Unavailable(_)
        ));
    }

    #[test]
    fn a_creator_the_channel_refuses_is_403_on_endorse_and_evaluate() {
        // Fabric 2.5's messages: an MSP the channel does not know (endorse: Aborted with the
        // endorser's message as detail; evaluate: FailedPrecondition), and a signature that
        // does not verify (a high S, or another key) which the endorser reports without detail.
        let unknown_msp = "error validating proposal: access denied: channel [tom] creator org unknown, creator is malformed";
        let bad_signature =
            "error validating proposal: access denied: channel [tom] creator org [Org1MSP]";
        let endorse = |message: &str| {
            status_with_details(
                Code::Aborted,
                "failed to endorse transaction, see attached details for more info",
                &[("127.0.0.1:7051", "Org1MSP", message)],
            )
        };
        let evaluate = |message: &str| {
            tonic::Status::failed_precondition(format!(
                "evaluate call to endorser returned error: {message}"
            ))
        };
        for status in [
            endorse(unknown_msp),
            endorse(bad_signature),
            evaluate(unknown_msp),
            evaluate(bad_signature),
            evaluate("access denied for [propose]: [Failed verifying that proposal's creator satisfies local MSP principal]"),
            endorse("failed evaluating policy on signed data during check policy [/Channels/tom/Application/Writers]: [signature set did not satisfy policy]"),
        ] {
            match from_status("endorse X", &status) {
                LedgerError::Rejected { status: 403, message } => {
                    assert!(message.contains("refuse the creator"), "{message}")
                }
                other => panic!("{status:?} should be 403, got {other:?}"),
            }
        }
    }

    #[test]
    fn outages_are_unavailable_and_bugs_are_internal() {
        let unavailable = [
            tonic::Status::unavailable("error trying to connect: tcp connect error: Connection refused (os error 111)"),
            tonic::Status::deadline_exceeded("endorsement timeout expired while collecting endorsements"),
            tonic::Status::unavailable("no orderers could successfully process transaction"),
            tonic::Status::failed_precondition("no combination of peers can be derived which satisfy the endorsement policy"),
            // The chaincode process killed: the endorser cannot reach it.
            status_with_details(
                Code::Aborted,
                "failed to endorse transaction, see attached details for more info",
                &[("127.0.0.1:7051", "Org1MSP", "error in simulation: failed to execute transaction: could not launch chaincode tom_0.1: connection refused")],
            ),
            tonic::Status::internal("h2 protocol error: error reading a body from connection"),
            tonic::Status::unknown("stream terminated by RST_STREAM"),
            tonic::Status::cancelled("operation was canceled"),
        ];
        for status in unavailable {
            assert!(
                matches!(from_status("X", &status), LedgerError::Unavailable(_)),
                "{status:?} should be Unavailable"
            );
        }
        for status in [
            tonic::Status::invalid_argument("the proposed transaction must contain a signed proposal"),
            tonic::Status::unimplemented("unknown service gateway.Gateway"),
            status_with_details(
                Code::Aborted,
                "failed to collect enough transaction endorsements, see attached details for more info",
                &[("p:1", "Org2MSP", "ProposalResponsePayloads do not match")],
            ),
        ] {
            assert!(
                matches!(from_status("X", &status), LedgerError::Internal(_)),
                "{status:?} should be Internal"
            );
        }
    }

    #[test]
    fn a_submit_is_known_not_sent_only_when_the_peer_says_so_or_was_never_reached() {
        for status in [
            tonic::Status::unavailable(
                "error trying to connect: tcp connect error: Connection refused (os error 111)",
            ),
            tonic::Status::unavailable("no orderers could successfully process transaction"),
            tonic::Status::aborted(
                "received unsuccessful response from orderer: status=SERVICE_UNAVAILABLE",
            ),
            tonic::Status::failed_precondition("channel tom not found"),
        ] {
            assert!(submit_not_sent(&status), "{status:?}");
        }
        for status in [
            tonic::Status::deadline_exceeded(
                "submit timeout expired while broadcasting to ordering service",
            ),
            tonic::Status::unavailable("connection reset"),
            tonic::Status::internal("h2 protocol error"),
            tonic::Status::cancelled("canceled"),
        ] {
            assert!(!submit_not_sent(&status), "{status:?}");
        }
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
