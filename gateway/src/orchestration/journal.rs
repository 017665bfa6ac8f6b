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
//!
//! On disk an action is still the JSON object the first journals held (a step name beside
//! optional `authorising_tx`, `service_id`, `service_name`), so a journal an earlier gateway left
//! behind is resumed as it is; in code it is an [`Action`] whose [`Step`] carries exactly what
//! that step knows. A stored action whose fields do not fit its step is refused with a message
//! naming the action, never guessed at.

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

/// How far an action got, carrying what the action knows at that step. Each step is journalled
/// once it has happened, so recovery reads the transaction id and service from the step itself
/// and never has to re-check optional fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Journalled, nothing submitted yet (or the submission's fate is unknown).
    Begun,
    /// The PLACE or leave transaction `tx_id` committed.
    Authorised { tx_id: String },
    /// Placements only: the Swarm service for the placement authorised by `tx_id` was created.
    ServiceCreated {
        tx_id: String,
        service_id: String,
        service_name: String,
    },
}

impl Step {
    /// The authorising transaction, once it is known.
    pub fn authorising_tx(&self) -> Option<&str> {
        match self {
            Step::Begun => None,
            Step::Authorised { tx_id } | Step::ServiceCreated { tx_id, .. } => Some(tx_id),
        }
    }
}

/// One open action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub id: u64,
    pub kind: ActionKind,
    pub step: Step,
    /// Unix seconds when the action began (to recognise its own transaction after a crash).
    pub started_at: i64,
}

/// The step's name as stored (the on-disk format is unchanged since journals were first written:
/// a step name beside optional fields; [`Step`] is how the code sees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredStep {
    Begun,
    Authorised,
    /// Called `swarm_done` on disk: the service was created.
    SwarmDone,
}

/// An action as it is stored: the format every earlier gateway wrote, so their journals are
/// read as they are. [`Action`] is built from it only if its fields fit its step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredAction {
    id: u64,
    #[serde(flatten)]
    kind: ActionKind,
    step: StoredStep,
    started_at: i64,
    authorising_tx: Option<String>,
    service_id: Option<String>,
    service_name: Option<String>,
}

impl From<&Action> for StoredAction {
    fn from(action: &Action) -> Self {
        let (step, authorising_tx, service_id, service_name) = match &action.step {
            Step::Begun => (StoredStep::Begun, None, None, None),
            Step::Authorised { tx_id } => (StoredStep::Authorised, Some(tx_id.clone()), None, None),
            Step::ServiceCreated {
                tx_id,
                service_id,
                service_name,
            } => (
                StoredStep::SwarmDone,
                Some(tx_id.clone()),
                Some(service_id.clone()),
                Some(service_name.clone()),
            ),
        };
        StoredAction {
            id: action.id,
            kind: action.kind.clone(),
            step,
            started_at: action.started_at,
            authorising_tx,
            service_id,
            service_name,
        }
    }
}

impl TryFrom<StoredAction> for Action {
    type Error = OrchestrationError;

    fn try_from(stored: StoredAction) -> Result<Self, Self::Error> {
        let unreadable = |why: &str| {
            OrchestrationError::Journal(format!(
                "journal action {} ({} of container {}) is unreadable: {why}",
                stored.id,
                stored.kind.name(),
                stored.kind.container_id()
            ))
        };
        let step = match (
            stored.step,
            stored.authorising_tx.clone(),
            stored.service_id.clone(),
            stored.service_name.clone(),
        ) {
            (StoredStep::Begun, None, None, None) => Step::Begun,
            (StoredStep::Authorised, Some(tx_id), None, None) => Step::Authorised { tx_id },
            (StoredStep::SwarmDone, Some(tx_id), Some(service_id), Some(service_name))
                if matches!(stored.kind, ActionKind::Place { .. }) =>
            {
                Step::ServiceCreated {
                    tx_id,
                    service_id,
                    service_name,
                }
            }
            (StoredStep::SwarmDone, ..) if matches!(stored.kind, ActionKind::Terminate { .. }) => {
                return Err(unreadable(
                    "step swarm_done on a termination (terminations journal no service)",
                ))
            }
            (step, tx, service, name) => {
                return Err(unreadable(&format!(
                    "step {step:?} with authorising_tx {tx:?}, service_id {service:?}, service_name {name:?} (the step fixes which are set)"
                )))
            }
        };
        Ok(Action {
            id: stored.id,
            kind: stored.kind,
            step,
            started_at: stored.started_at,
        })
    }
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
            };
            let mut actions = tx
                .open_table(ACTIONS)
                .map_err(|e| jerr("open actions", e))?;
            actions
                .insert(id, to_json(&StoredAction::from(&action))?.as_slice())
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
                .insert(action.id, to_json(&StoredAction::from(action))?.as_slice())
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
            out.push(Action::try_from(from_json::<StoredAction>(value.value())?)?);
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
            action.step = Step::Authorised {
                tx_id: "tx1".into(),
            };
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
        assert_eq!(
            open[0].step,
            Step::Authorised {
                tx_id: "tx1".into()
            }
        );
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

    /// Write `json` as action `id`, bypassing [`Journal::update`], as an earlier gateway would
    /// have written it.
    fn store_raw(journal: &Journal, id: u64, json: &str) {
        journal
            .write(|tx| {
                let mut actions = tx.open_table(ACTIONS).unwrap();
                actions.insert(id, json.as_bytes()).unwrap();
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn journals_written_by_earlier_gateways_are_read_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.redb")).unwrap();
        // Byte for byte what the gateway wrote before steps carried their data.
        store_raw(
            &journal,
            1,
            r#"{"id":1,"kind":"place","container_id":"c1","device_id":"d1","step":"begun","started_at":100,"authorising_tx":null,"service_id":null,"service_name":null}"#,
        );
        store_raw(
            &journal,
            2,
            r#"{"id":2,"kind":"place","container_id":"c2","device_id":"d1","step":"swarm_done","started_at":101,"authorising_tx":"tx2","service_id":"svc2","service_name":"tom-c2-tx2"}"#,
        );
        store_raw(
            &journal,
            3,
            r#"{"id":3,"kind":"terminate","container_id":"c3","reason":"gone","step":"authorised","started_at":102,"authorising_tx":"tx3","service_id":null,"service_name":null}"#,
        );
        let steps: Vec<(u64, Step)> = journal
            .open_actions()
            .unwrap()
            .into_iter()
            .map(|a| (a.id, a.step))
            .collect();
        assert_eq!(
            steps,
            vec![
                (1, Step::Begun),
                (
                    2,
                    Step::ServiceCreated {
                        tx_id: "tx2".into(),
                        service_id: "svc2".into(),
                        service_name: "tom-c2-tx2".into()
                    }
                ),
                (
                    3,
                    Step::Authorised {
                        tx_id: "tx3".into()
                    }
                ),
            ]
        );
        // And what this gateway writes is that same format.
        let action = journal.open_actions().unwrap().remove(1);
        journal.update(&action).unwrap();
        let tx = journal.db.begin_read().unwrap();
        let table = tx.open_table(ACTIONS).unwrap();
        let stored: serde_json::Value =
            serde_json::from_slice(table.get(2).unwrap().unwrap().value()).unwrap();
        assert_eq!(
            stored,
            serde_json::json!({"id":2,"kind":"place","container_id":"c2","device_id":"d1","step":"swarm_done","started_at":101,"authorising_tx":"tx2","service_id":"svc2","service_name":"tom-c2-tx2"})
        );
    }

    #[test]
    fn a_stored_action_whose_fields_do_not_fit_its_step_is_refused_by_name() {
        for (json, why) in [
            (
                r#"{"id":7,"kind":"place","container_id":"c7","device_id":"d1","step":"authorised","started_at":1,"authorising_tx":null,"service_id":null,"service_name":null}"#,
                "journal action 7 (place of container c7) is unreadable: step Authorised with authorising_tx None",
            ),
            (
                r#"{"id":7,"kind":"place","container_id":"c7","device_id":"d1","step":"swarm_done","started_at":1,"authorising_tx":"tx","service_id":null,"service_name":null}"#,
                "step SwarmDone with authorising_tx Some(\"tx\"), service_id None",
            ),
            (
                r#"{"id":7,"kind":"terminate","container_id":"c7","reason":null,"step":"swarm_done","started_at":1,"authorising_tx":"tx","service_id":"s","service_name":"n"}"#,
                "step swarm_done on a termination",
            ),
            (
                r#"{"id":7,"kind":"place","container_id":"c7","device_id":"d1","step":"service_created","started_at":1}"#,
                "corrupt journal entry",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let journal = Journal::open(&dir.path().join("j.redb")).unwrap();
            store_raw(&journal, 7, json);
            let error = journal.open_actions().unwrap_err().to_string();
            assert!(error.contains(why), "{json}: {error}");
        }
    }
}
