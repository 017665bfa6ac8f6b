//! The chaincode server's one error type. Messages name the setting, file or protocol step that
//! failed so that an operator can fix a deployment from the log line alone.

use std::path::PathBuf;

/// Why the chaincode server could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum ChaincodeError {
    /// An environment setting is missing or malformed.
    #[error("{variable}: {detail}")]
    Config {
        variable: &'static str,
        detail: String,
    },
    /// A TLS file named by a setting could not be read.
    #[error("{variable}: cannot read {path}: {source}")]
    ReadFile {
        variable: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The listening socket could not be opened.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// The gRPC transport failed (TLS set-up or the accept loop).
    #[error("grpc transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl ChaincodeError {
    pub(crate) fn config(variable: &'static str, detail: impl Into<String>) -> Self {
        ChaincodeError::Config {
            variable,
            detail: detail.into(),
        }
    }
}
