//! Failpoints: the named places where a crash test can freeze an action, as if the process had
//! died there.
//!
//! Recovery is only as good as the crash points it was tested at, so each protocol step that
//! commits something has a failpoint right after it: a test freezes the action there, kills or
//! drops the gateway, and checks that the next start resolves the action truthfully. In
//! process the hook is a closure ([`Orchestrator::with_pause_hook`]); for a real `tom serve`
//! process, [`FAILPOINT_ENV`] names the step. Outside those tests nothing is installed and
//! [`Orchestrator::checkpoint`] costs one `Option` check.

use std::sync::Arc;

use serde::Serialize;

use super::Orchestrator;

/// A place in a protocol where an action can be frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failpoint {
    /// Placement: PLACE committed, but the journal does not know its transaction id yet.
    Submitted,
    /// Placement: PLACE committed and journalled ([`super::Step::Authorised`]); no service yet.
    Authorised,
    /// Placement: the service exists and is journalled ([`super::Step::ServiceCreated`]); its
    /// outcome is not recorded yet.
    Created,
    /// Termination: the leave transaction committed and is journalled; the service still runs.
    Left,
}

impl Failpoint {
    pub const ALL: [Failpoint; 4] = [
        Failpoint::Submitted,
        Failpoint::Authorised,
        Failpoint::Created,
        Failpoint::Left,
    ];

    /// The name [`FAILPOINT_ENV`] takes.
    pub fn name(self) -> &'static str {
        match self {
            Failpoint::Submitted => "submitted",
            Failpoint::Authorised => "authorised",
            Failpoint::Created => "created",
            Failpoint::Left => "left",
        }
    }

    pub fn from_name(name: &str) -> Option<Failpoint> {
        Failpoint::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl std::fmt::Display for Failpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Test hook: called at each [`Failpoint`]; returning true freezes the action there forever, as
/// if the process had died at that point (the test then drops the orchestrator).
pub type PauseHook = Arc<dyn Fn(Failpoint) -> bool + Send + Sync>;

/// The crash-test failpoint: with `TOM_FAILPOINT_SWARM=<step>` (a [`Failpoint::name`]:
/// `submitted`, `authorised`, `created` or `left`) in its environment, a gateway freezes every
/// action at that step forever, so a test can kill the process exactly there. Unset (always,
/// outside those tests), it does nothing.
pub const FAILPOINT_ENV: &str = "TOM_FAILPOINT_SWARM";

pub(super) fn failpoint_from_env() -> Option<PauseHook> {
    let step = std::env::var(FAILPOINT_ENV)
        .ok()
        .filter(|s| !s.is_empty())?;
    let Some(step) = Failpoint::from_name(&step) else {
        let known: Vec<&str> = Failpoint::ALL.iter().map(|f| f.name()).collect();
        tracing::error!(%step, ?known, "{FAILPOINT_ENV} names no failpoint; nothing will freeze");
        return None;
    };
    tracing::warn!(%step, "{FAILPOINT_ENV} is set: actions will freeze at this step (crash tests only)");
    Some(Arc::new(move |at: Failpoint| {
        let freeze = at == step;
        if freeze {
            tracing::warn!(step = %at, "failpoint reached: freezing this action");
        }
        freeze
    }))
}

impl Orchestrator {
    /// Install a [`PauseHook`] (crash tests only).
    pub fn with_pause_hook(mut self, hook: PauseHook) -> Self {
        self.pause = Some(hook);
        self
    }

    /// Freeze here forever if the installed hook asks to.
    pub(super) async fn checkpoint(&self, at: Failpoint) {
        if let Some(hook) = &self.pause {
            if hook(at) {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Failpoint;

    #[test]
    fn every_failpoint_is_found_by_its_name() {
        for f in Failpoint::ALL {
            assert_eq!(Failpoint::from_name(f.name()), Some(f));
            assert_eq!(serde_json::to_value(f).unwrap(), f.name());
        }
        assert_eq!(Failpoint::from_name("swarm_done"), None);
    }
}
