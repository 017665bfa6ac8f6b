//! The durable journal of orchestration actions in flight, in a redb file under the gateway's
//! data directory.
//!
//! Every step of a placement or termination is committed here (redb commits are fsynced,
//! `Durability::Immediate`) *before* the next step starts, so after a crash
//! [`super::Orchestrator::recover`] knows how far each open action got and which transaction
//! ids and service it involved. The journal also remembers which placements TOM carried out
//! (to notice services removed behind its back) and which drift it already reported (so a
//! periodic reconciliation does not record the same drift twice). It never decides anything:
//! the ledger stays the authority on what is authorised.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::OrchestrationError;

const ACTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("actions");
const PLACEMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("placements");
const DRIFT: TableDefinition<&str, &str> = TableDefinition::new("drift_reported");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// What an action does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActionKind {
    Place {
        container_id: String,
        device_id: String,
    },
    Terminate {
        container_id: String,
        reason: Option<String>,
    },
}

impl ActionKind {
    pub fn container_id(&self) -> &str {
        match self {
            ActionKind::Place { container_id, .. } | ActionKind::Terminate { container_id, .. } => {
                container_id
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::Place { .. } => "place",
            ActionKind::Terminate { .. } => "terminate",
        }
    }
}

/// How far an action got. Each step is journalled once it has happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Journalled, nothing submitted yet (or the submission's fate is unknown).
    Begun,
    /// The PLACE or TERMINATE transaction committed (`authorising_tx`).
    Authorised,
    /// The Swarm service was created (place) or removed (terminate).
    SwarmDone,
}

/// One open action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub id: u64,
    #[serde(flatten)]
    pub kind: ActionKind,
    pub step: Step,
    /// Unix seconds when the action began (to recognise its own transaction after a crash).
    pub started_at: i64,
    pub authorising_tx: Option<String>,
    pub service_id: Option<String>,
    pub service_name: Option<String>,
}

/// A placement TOM carried out and has not terminated.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tracked {
    pub container_id: String,
    pub device_id: String,
    pub authorising_tx: String,
    pub service_id: String,
    pub service_name: String,
    /// The service's bind mounts and networks as TOM created them (`None` in journals written
    /// before they were kept: then they are not compared).
    #[serde(default)]
    pub mounts: Option<Vec<crate::swarm::BindMount>>,
    #[serde(default)]
    pub networks: Option<Vec<String>>,
}

/// The journal file. Cloning shares the open database.
#[derive(Clone)]
pub struct Journal {
    db: Arc<Database>,
}

fn jerr(context: &str, e: impl std::fmt::Display) -> OrchestrationError {
    OrchestrationError::Journal(format!("{context}: {e}"))
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, OrchestrationError> {
    serde_json::to_vec(value)
        .map_err(|e| OrchestrationError::Journal(format!("cannot encode journal entry: {e}")))
}

fn from_json<T: for<'a> Deserialize<'a>>(bytes: &[u8]) -> Result<T, OrchestrationError> {
    serde_json::from_slice(bytes)
        .map_err(|e| OrchestrationError::Journal(format!("corrupt journal entry: {e}")))
}

impl Journal {
    /// Open (or create) the journal at `path`. Only one process may hold it open.
    pub fn open(path: &Path) -> Result<Self, OrchestrationError> {
        let db = Database::create(path).map_err(|e| {
            OrchestrationError::Journal(format!("cannot open journal {}: {e}", path.display()))
        })?;
        let journal = Journal { db: Arc::new(db) };
        // Create the tables up front so readers never meet a missing table.
        journal.write(|tx| {
            tx.open_table(ACTIONS)
                .map_err(|e| jerr("open actions", e))?;
            tx.open_table(PLACEMENTS)
                .map_err(|e| jerr("open placements", e))?;
            tx.open_table(DRIFT).map_err(|e| jerr("open drift", e))?;
            tx.open_table(META).map_err(|e| jerr("open meta", e))?;
            Ok(())
        })?;
        Ok(journal)
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<R, OrchestrationError>,
    ) -> Result<R, OrchestrationError> {
        let tx = self.db.begin_write().map_err(|e| jerr("begin write", e))?;
        let result = f(&tx)?;
        tx.commit().map_err(|e| jerr("commit", e))?;
        Ok(result)
    }

    /// Journal a new action at [`Step::Begun`].
    pub fn begin(&self, kind: ActionKind, started_at: i64) -> Result<Action, OrchestrationError> {
        self.write(|tx| {
            let id = {
                let mut meta = tx.open_table(META).map_err(|e| jerr("open meta", e))?;
                let next = meta
                    .get("next_action")
                    .map_err(|e| jerr("read meta", e))?
                    .map_or(1, |v| v.value());
                meta.insert("next_action", next + 1)
                    .map_err(|e| jerr("write meta", e))?;
                next
            };
            let action = Action {
                id,
                kind,
                step: Step::Begun,
                started_at,
                authorising_tx: None,
                service_id: None,
                service_name: None,
            };
            let mut actions = tx
                .open_table(ACTIONS)
                .map_err(|e| jerr("open actions", e))?;
            actions
                .insert(id, to_json(&action)?.as_slice())
                .map_err(|e| jerr("write action", e))?;
            Ok(action)
        })
    }

    /// Record the step an action reached (the whole action is rewritten).
    pub fn update(&self, action: &Action) -> Result<(), OrchestrationError> {
        self.write(|tx| {
            let mut actions = tx
                .open_table(ACTIONS)
                .map_err(|e| jerr("open actions", e))?;
            actions
                .insert(action.id, to_json(action)?.as_slice())
                .map_err(|e| jerr("write action", e))?;
            Ok(())
        })
    }

    /// The action is resolved: forget it.
    pub fn close(&self, id: u64) -> Result<(), OrchestrationError> {
        self.write(|tx| {
            let mut actions = tx
                .open_table(ACTIONS)
                .map_err(|e| jerr("open actions", e))?;
            actions.remove(id).map_err(|e| jerr("remove action", e))?;
            Ok(())
        })
    }

    /// Actions not yet resolved, oldest first.
    pub fn open_actions(&self) -> Result<Vec<Action>, OrchestrationError> {
        let tx = self.db.begin_read().map_err(|e| jerr("begin read", e))?;
        let table = tx
            .open_table(ACTIONS)
            .map_err(|e| jerr("open actions", e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| jerr("scan actions", e))? {
            let (_, value) = entry.map_err(|e| jerr("scan actions", e))?;
            out.push(from_json(value.value())?);
        }
        Ok(out)
    }

    /// Remember a placement TOM carried out (replacing any earlier one of the same container).
    pub fn track(&self, placement: &Tracked) -> Result<(), OrchestrationError> {
        self.write(|tx| {
            let mut table = tx
                .open_table(PLACEMENTS)
                .map_err(|e| jerr("open placements", e))?;
            table
                .insert(
                    placement.container_id.as_str(),
                    to_json(placement)?.as_slice(),
                )
                .map_err(|e| jerr("write placement", e))?;
            Ok(())
        })
    }

    pub fn untrack(&self, container_id: &str) -> Result<(), OrchestrationError> {
        self.write(|tx| {
            let mut table = tx
                .open_table(PLACEMENTS)
                .map_err(|e| jerr("open placements", e))?;
            table
                .remove(container_id)
                .map_err(|e| jerr("remove placement", e))?;
            Ok(())
        })
    }

    pub fn tracked(&self) -> Result<Vec<Tracked>, OrchestrationError> {
        let tx = self.db.begin_read().map_err(|e| jerr("begin read", e))?;
        let table = tx
            .open_table(PLACEMENTS)
            .map_err(|e| jerr("open placements", e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| jerr("scan placements", e))? {
            let (_, value) = entry.map_err(|e| jerr("scan placements", e))?;
            out.push(from_json(value.value())?);
        }
        Ok(out)
    }

    /// Whether drift about `subject` (a service id) was recorded already.
    pub fn drift_reported(&self, subject: &str) -> Result<bool, OrchestrationError> {
        let tx = self.db.begin_read().map_err(|e| jerr("begin read", e))?;
        let table = tx.open_table(DRIFT).map_err(|e| jerr("open drift", e))?;
        Ok(table
            .get(subject)
            .map_err(|e| jerr("read drift", e))?
            .is_some())
    }

    pub fn mark_drift(&self, subject: &str, tx_id: &str) -> Result<(), OrchestrationError> {
        self.write(|tx| {
            let mut table = tx.open_table(DRIFT).map_err(|e| jerr("open drift", e))?;
            table
                .insert(subject, tx_id)
                .map_err(|e| jerr("write drift", e))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.redb");
        let place = ActionKind::Place {
            container_id: "c1".into(),
            device_id: "d1".into(),
        };
        {
            let journal = Journal::open(&path).unwrap();
            let mut action = journal.begin(place.clone(), 100).unwrap();
            action.step = Step::Authorised;
            action.authorising_tx = Some("tx1".into());
            journal.update(&action).unwrap();
            let done = journal
                .begin(
                    ActionKind::Terminate {
                        container_id: "c2".into(),
                        reason: None,
                    },
                    101,
                )
                .unwrap();
            journal.close(done.id).unwrap();
        }
        let journal = Journal::open(&path).unwrap();
        let open = journal.open_actions().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].kind, place);
        assert_eq!(open[0].step, Step::Authorised);
        assert_eq!(open[0].authorising_tx.as_deref(), Some("tx1"));
        // Ids keep growing across restarts, so a new action never reuses a resolved one's id.
        assert_eq!(journal.begin(place, 102).unwrap().id, 3);
    }

    #[test]
    fn tracked_placements_and_drift_marks() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.redb")).unwrap();
        let t = Tracked {
            container_id: "c1".into(),
            device_id: "d1".into(),
            authorising_tx: "tx".into(),
            service_id: "s".into(),
            service_name: "n".into(),
            ..Tracked::default()
        };
        journal.track(&t).unwrap();
        assert_eq!(journal.tracked().unwrap(), vec![t]);
        journal.untrack("c1").unwrap();
        assert!(journal.tracked().unwrap().is_empty());
        assert!(!journal.drift_reported("svc").unwrap());
        journal.mark_drift("svc", "tx9").unwrap();
        assert!(journal.drift_reported("svc").unwrap());
    }
}
