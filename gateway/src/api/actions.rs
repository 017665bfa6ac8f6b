//! The container-actions port as the REST API sees it. The port belongs to orchestration
//! ([`crate::orchestration::port`]): the API depends on orchestration, never the reverse.

pub use crate::orchestration::port::{ActionError, ActionReport, ContainerActions, LedgerOnly};
