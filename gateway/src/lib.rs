//! TOM's gateway: the service orchestrators call. Every orchestration action becomes exactly one
//! ledger transaction (through a [`ledger::Ledger`] back end) and, for placements and removals, a
//! Docker Swarm action.

pub mod api;
pub mod app;
pub mod clock;
pub mod evidence;
pub mod identities;
pub mod ledger;
pub mod orchestration;
pub mod report;
pub mod swarm;
