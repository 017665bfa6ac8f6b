//! TOM's chaincode as a service: a gRPC server that Fabric peers connect to, which runs the
//! pure contract library (`tom-contract`) for every transaction they send.
//!
//! Fabric has no Rust chaincode runtime, so this crate is TOM's own shim over the peer's
//! chaincode protocol (`protos.Chaincode/Connect`, the messages pre-generated in
//! `fabric-shim-protos`), with tonic for transport and TLS:
//!
//! * [`config`] reads the CCaaS settings (`CHAINCODE_ID`, `CHAINCODE_SERVER_ADDRESS`,
//!   `CHAINCODE_TLS_*`) and refuses bad ones by name;
//! * [`server`] accepts peers and shuts down promptly even while they hold streams open;
//! * `handler` runs one peer's stream: REGISTER → REGISTERED → READY, then many transactions
//!   at once, routed by `(channel, txid)`;
//! * `peer_stub` implements the contract's ledger-stub trait by asking the peer;
//! * [`proposal`] takes the creator and timestamp out of the signed proposal.
//!
//! It must never hold contract logic of its own: what a transaction does, and the bytes it
//! reads, writes and returns, come from `tom_contract::invoke` alone, so every endorsing peer
//! (and the gateway's embedded ledger) computes the same read-write set.

pub mod config;
pub mod error;
mod handler;
mod peer_stub;
pub mod proposal;
pub mod server;

pub use config::Config;
pub use error::ChaincodeError;
pub use server::{bind, serve};
