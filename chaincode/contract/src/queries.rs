//! The audit queries (read-only transactions): entities, history, lineage, records by agent or
//! time window. Every answer is built from ordered scans and `BTreeMap`/`BTreeSet`s, so every peer
//! returns the same bytes.
//!
//! Every query's cost depends on its answer, not on the ledger: records and inventories are
//! paged index scans, and the lineage walk (issue 13) reads each index in pages of `fan_out`
//! entries and stops at `limit` nodes, handing back a bookmark of its frontier instead of
//! reading on (see [`get_lineage`]). Reads go through `get_state_by_range_with_pagination`, the
//! one bounded range read both Fabric's shim (evaluate transactions) and the ledgers that
//! simulate the contract themselves (`CommittedState::range_limited`) serve without reading
//! past the page. An answer also re-reads exactly what it reads, so an evidence bundle's replay
//! of a truncated lineage gives the same part: the entry that tells a step to stop is one the
//! walk read, not one it peeked at.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::context::Ctx;
use crate::error::ContractError;
use crate::keys;
use crate::ledger::{split_composite_key, Timestamp};
use crate::model::*;
use crate::requests::{self, Direction};
use crate::transaction::{Callers, Kind, Transaction};
use crate::transactions::check_id;

pub const DEFAULT_DEPTH: u32 = 8;
pub const MAX_DEPTH: u32 = 64;
/// The most nodes one lineage answer holds (a few MiB at most): a caller asking for a larger
/// `limit` is refused; a wider lineage comes in parts (`truncated`, `bookmark`).
pub const MAX_LINEAGE_NODES: usize = 2_000;
pub const DEFAULT_PAGE: u32 = 100;
pub const MAX_PAGE: u32 = 1000;
/// A page of records stops before its records' JSON exceeds this many bytes (at least one
/// record is always returned); the bookmark then points at the first record left out.
pub const PAGE_BYTES: usize = 1 << 20;

/// `GetEntity`: a device, container or data item, or a processing contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant, reason = "one value per query response")]
pub enum EntityView {
    Entity(Entity),
    Contract(ContractView),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContractView {
    #[serde(rename = "type")]
    pub kind: ContractTag,
    #[serde(flatten)]
    pub contract: ProcessingContract,
    /// The state as of the query's transaction time (deadline evaluated).
    pub effective_state: ContractState,
}

/// The `"type": "contract"` that tells a contract view from an entity (whose `type` is
/// `device`, `container` or `data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContractTag {
    Contract,
}

pub fn get_entity(ctx: &Ctx, req: requests::ById) -> Result<EntityView, ContractError> {
    ctx.caller()?;
    check_id(ctx.function, "id", &req.id)?;
    if let Some(entity) = ctx.entity(&req.id)? {
        return Ok(EntityView::Entity(entity));
    }
    if let Some(contract) = ctx.contract(&req.id)? {
        let effective_state = contract.state_at(ctx.now());
        return Ok(EntityView::Contract(ContractView {
            kind: ContractTag::Contract,
            contract,
            effective_state,
        }));
    }
    Err(ContractError::NotFound {
        kind: "entity",
        id: req.id,
    })
}

pub fn get_org(ctx: &Ctx, req: requests::ById) -> Result<Org, ContractError> {
    ctx.caller()?;
    check_id(ctx.function, "id", &req.id)?;
    ctx.org(&req.id)?.ok_or(ContractError::NotFound {
        kind: "organisation",
        id: req.id,
    })
}

pub fn get_record(ctx: &Ctx, req: requests::ById) -> Result<LedgerRecord, ContractError> {
    ctx.caller()?;
    ctx.get(&keys::key(keys::RECORD, &[&req.id])?)?
        .ok_or(ContractError::NotFound {
            kind: "record",
            id: req.id,
        })
}

/// One version of an entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryEntry {
    pub tx_id: String,
    pub timestamp: Timestamp,
    pub is_delete: bool,
    pub value: Option<serde_json::Value>,
}

pub fn get_history(ctx: &Ctx, req: requests::ById) -> Result<Vec<HistoryEntry>, ContractError> {
    ctx.caller()?;
    check_id(ctx.function, "id", &req.id)?;
    let mut key = keys::key(keys::ENTITY, &[&req.id])?;
    let mut history = ctx.stub.get_history_for_key(&key)?;
    if history.is_empty() {
        key = keys::key(keys::CONTRACT, &[&req.id])?;
        history = ctx.stub.get_history_for_key(&key)?;
    }
    if history.is_empty() {
        return Err(ContractError::NotFound {
            kind: "entity",
            id: req.id,
        });
    }
    history
        .into_iter()
        .map(|m| {
            let value = if m.is_delete {
                None
            } else {
                Some(
                    serde_json::from_slice(&m.value).map_err(|e| ContractError::CorruptState {
                        key: key.clone(),
                        detail: e.to_string(),
                    })?,
                )
            };
            Ok(HistoryEntry {
                tx_id: m.tx_id,
                timestamp: m.timestamp,
                is_delete: m.is_delete,
                value,
            })
        })
        .collect()
}

// --- records by agent / entity / time ---------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecordPage {
    pub records: Vec<LedgerRecord>,
    /// Pass back as `bookmark` for the next page; empty when this is the last.
    pub bookmark: String,
}

pub fn query_records(ctx: &Ctx, req: requests::RecordsQuery) -> Result<RecordPage, ContractError> {
    let f = ctx.function;
    ctx.caller()?;
    let parse = |field: &str,
                 text: &Option<String>,
                 default: Timestamp|
     -> Result<Timestamp, ContractError> {
        match text {
            None => Ok(default),
            Some(t) => crate::time::parse_rfc3339(t).ok_or_else(|| {
                ContractError::bad(f, format!("{field} {t:?} is not an RFC 3339 timestamp"))
            }),
        }
    };
    let from = parse("from", &req.from, Timestamp::from_seconds(0))?;
    // Year 9999: beyond any transaction timestamp.
    let to = parse("to", &req.to, Timestamp::from_seconds(253_402_300_799))?;
    if to < from {
        return Err(ContractError::bad(
            f,
            format!("to ({to}) is before from ({from})"),
        ));
    }
    let page_size = req.page_size.unwrap_or(DEFAULT_PAGE);
    if page_size == 0 || page_size > MAX_PAGE {
        return Err(ContractError::bad(
            f,
            format!("page_size must be 1 to {MAX_PAGE}, got {page_size}"),
        ));
    }
    let (start, end) = match (&req.agent, &req.entity) {
        (Some(_), Some(_)) => return Err(ContractError::bad(f, "give agent or entity, not both")),
        (Some(agent), None) => {
            if agent.is_empty() || agent.len() > 300 || agent.contains('\u{0}') {
                return Err(ContractError::bad(
                    f,
                    "agent must be <msp_id>/<common name>",
                ));
            }
            keys::time_range(keys::BY_AGENT, &[agent], from, to)?
        }
        (None, Some(entity)) => {
            check_id(f, "entity", entity)?;
            keys::time_range(keys::BY_ENTITY, &[entity], from, to)?
        }
        (None, None) => keys::time_range(keys::BY_TIME, &[], from, to)?,
    };
    let bookmark = match req.bookmark.as_deref() {
        None | Some("") => String::new(),
        Some(b) => keys::decode_bookmark(b)
            .ok_or_else(|| ContractError::bad(f, "bookmark does not belong to this query"))?,
    };
    if !(bookmark.is_empty() || (bookmark >= start && bookmark < end)) {
        return Err(ContractError::bad(
            f,
            "bookmark does not belong to this query",
        ));
    }
    let (rows, next) = ctx
        .stub
        .get_state_by_range_with_pagination(&start, &end, page_size, &bookmark)?;
    let mut records = Vec::with_capacity(rows.len());
    let mut bytes = 0usize;
    for row in rows {
        let tx_id = String::from_utf8_lossy(&row.value).into_owned();
        let key = keys::key(keys::RECORD, &[&tx_id])?;
        let raw = ctx
            .stub
            .get_state(&key)?
            .ok_or_else(|| ContractError::CorruptState {
                key: row.key.clone(),
                detail: format!("index names missing record {tx_id}"),
            })?;
        if !records.is_empty() && bytes + raw.len() > PAGE_BYTES {
            // The byte budget is spent: the next page starts at this row.
            return Ok(RecordPage {
                records,
                bookmark: keys::encode_bookmark(&row.key),
            });
        }
        bytes += raw.len();
        let record: LedgerRecord =
            serde_json::from_slice(&raw).map_err(|e| ContractError::CorruptState {
                key: key.clone(),
                detail: e.to_string(),
            })?;
        records.push(record);
    }
    Ok(RecordPage {
        records,
        bookmark: if next.is_empty() {
            next
        } else {
            keys::encode_bookmark(&next)
        },
    })
}

// --- inventory: devices, containers, contracts ------------------------------------------------

/// A page of an inventory listing, ordered by index key (organisation, then id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    /// Pass back as `bookmark` for the next page; empty when this is the last.
    pub bookmark: String,
}

fn page_size(f: &'static str, page_size: Option<u32>) -> Result<u32, ContractError> {
    let n = page_size.unwrap_or(DEFAULT_PAGE);
    if n == 0 || n > MAX_PAGE {
        return Err(ContractError::bad(
            f,
            format!("page_size must be 1 to {MAX_PAGE}, got {n}"),
        ));
    }
    Ok(n)
}

/// Up to `page_size` index keys from `ranges` (disjoint, ascending), continuing at the opaque
/// `bookmark`; returns the keys and the next page's bookmark (empty after the last).
fn scan_ranges(
    ctx: &Ctx,
    ranges: &[(String, String)],
    page_size: u32,
    bookmark: Option<&str>,
) -> Result<(Vec<String>, String), ContractError> {
    let f = ctx.function;
    let wrong = || ContractError::bad(f, "bookmark does not belong to this query");
    let (mut index, mut at) = match bookmark {
        None | Some("") => (0, String::new()),
        Some(b) => {
            let key = keys::decode_bookmark(b).ok_or_else(wrong)?;
            let index = ranges
                .iter()
                .position(|(start, end)| key >= *start && key < *end)
                .ok_or_else(wrong)?;
            (index, key)
        }
    };
    let mut found = Vec::new();
    while let Some((start, end)) = ranges.get(index) {
        let left = page_size - found.len() as u32;
        if left == 0 {
            return Ok((found, keys::encode_bookmark(start)));
        }
        let (rows, next) = ctx
            .stub
            .get_state_by_range_with_pagination(start, end, left, &at)?;
        found.extend(rows.into_iter().map(|row| row.key));
        if !next.is_empty() {
            return Ok((found, keys::encode_bookmark(&next)));
        }
        index += 1;
        at = String::new();
    }
    Ok((found, String::new()))
}

/// The last attribute of an index key: the id it indexes.
fn indexed_id(key: &str) -> Result<String, ContractError> {
    split_composite_key(key)
        .and_then(|(_, attributes)| attributes.last().map(|id| (*id).to_owned()))
        .ok_or_else(|| ContractError::CorruptState {
            key: key.to_owned(),
            detail: "not a composite index key".to_owned(),
        })
}

fn indexed_entities(ctx: &Ctx, keys: Vec<String>) -> Result<Vec<Entity>, ContractError> {
    keys.into_iter()
        .map(|key| {
            let id = indexed_id(&key)?;
            ctx.entity(&id)?.ok_or_else(|| ContractError::CorruptState {
                key,
                detail: format!("index names missing entity {id}"),
            })
        })
        .collect()
}

/// `ListDevices`: devices by organisation and state, from `tom.device-by-state`.
pub fn list_devices(
    ctx: &Ctx,
    req: requests::DevicesQuery,
) -> Result<ListPage<Entity>, ContractError> {
    use requests::DeviceStateFilter as S;
    let f = ctx.function;
    ctx.caller()?;
    let n = page_size(f, req.page_size)?;
    let state = match req.state {
        None => "any",
        Some(S::Joined) => "joined",
        Some(S::Left) => "left",
        Some(S::Available) => "available",
        Some(S::Unavailable) => "unavailable",
    };
    let mut attributes = vec![state];
    if let Some(org) = &req.org {
        check_id(f, "org", org)?;
        attributes.push(org);
    }
    let range = keys::prefix_range(keys::DEVICE_BY_STATE, &attributes)?;
    let (found, bookmark) = scan_ranges(ctx, &[range], n, req.bookmark.as_deref())?;
    Ok(ListPage {
        items: indexed_entities(ctx, found)?,
        bookmark,
    })
}

/// `ListContainers`: the containers placed on a device (`tom.placed-on`), or containers by
/// organisation and state (`tom.container-by-state`).
pub fn list_containers(
    ctx: &Ctx,
    req: requests::ContainersQuery,
) -> Result<ListPage<Entity>, ContractError> {
    use requests::ContainerStateFilter as S;
    let f = ctx.function;
    ctx.caller()?;
    let n = page_size(f, req.page_size)?;
    let range = match (&req.device, &req.org, req.state) {
        (Some(device), None, None) => {
            check_id(f, "device", device)?;
            keys::prefix_range(keys::PLACED_ON, &[device])?
        }
        (Some(_), _, _) => {
            return Err(ContractError::bad(
                f,
                "device lists the containers placed on it: give device alone, or org and state",
            ))
        }
        (None, org, state) => {
            let state = match state {
                None => "any",
                Some(S::Joined) => "joined",
                Some(S::Left) => "left",
            };
            let mut attributes = vec![state];
            if let Some(org) = org {
                check_id(f, "org", org)?;
                attributes.push(org);
            }
            keys::prefix_range(keys::CONTAINER_BY_STATE, &attributes)?
        }
    };
    let (found, bookmark) = scan_ranges(ctx, &[range], n, req.bookmark.as_deref())?;
    Ok(ListPage {
        items: indexed_entities(ctx, found)?,
        bookmark,
    })
}

/// `ListContracts`: contracts by effective state as of the query's transaction time, from
/// `tom.contract-by-state`: `active` = stored active with the deadline not passed; `violated` =
/// settled violated, then stored active whose deadline passed (not yet settled).
pub fn list_contracts(
    ctx: &Ctx,
    req: requests::ContractsQuery,
) -> Result<ListPage<ContractView>, ContractError> {
    let f = ctx.function;
    ctx.caller()?;
    let n = page_size(f, req.page_size)?;
    let now = ctx.now();
    let end_of_time = Timestamp::from_seconds(253_402_300_799);
    let ranges = match req.state {
        None => vec![keys::prefix_range(keys::CONTRACT_BY_STATE, &["any"])?],
        Some(ContractState::Active) => {
            // Active while now <= deadline: deadlines from now on.
            vec![keys::time_range(
                keys::CONTRACT_BY_STATE,
                &["active"],
                now,
                end_of_time,
            )?]
        }
        Some(ContractState::Fulfilled) => {
            vec![keys::prefix_range(keys::CONTRACT_BY_STATE, &["fulfilled"])?]
        }
        Some(ContractState::Violated) => vec![
            keys::time_range(
                keys::CONTRACT_BY_STATE,
                &["active"],
                Timestamp::from_seconds(0),
                now,
            )?,
            keys::prefix_range(keys::CONTRACT_BY_STATE, &["violated"])?,
        ],
    };
    let (found, bookmark) = scan_ranges(ctx, &ranges, n, req.bookmark.as_deref())?;
    let items = found
        .into_iter()
        .map(|key| {
            let id = indexed_id(&key)?;
            let contract = ctx
                .contract(&id)?
                .ok_or_else(|| ContractError::CorruptState {
                    key,
                    detail: format!("index names missing contract {id}"),
                })?;
            Ok(ContractView {
                kind: ContractTag::Contract,
                effective_state: contract.state_at(now),
                contract,
            })
        })
        .collect::<Result<Vec<_>, ContractError>>()?;
    Ok(ListPage { items, bookmark })
}

// --- lineage ----------------------------------------------------------------------------------

/// The nodes one answer holds when the caller gives no `limit`.
pub const DEFAULT_LINEAGE_LIMIT: u32 = 500;
/// The neighbours followed per node and relation kind when the caller gives no `fan_out`.
pub const DEFAULT_FAN_OUT: u32 = 100;
/// The largest `fan_out` a caller may ask for.
pub const MAX_FAN_OUT: u32 = 1000;
/// The longest lineage bookmark, in bytes. It travels in a URL, and a bookmark one character too
/// long must still reach the gateway to be refused with a 400 that names it: percent-encoded as
/// 4-byte UTF-8 (12 URL bytes a character), a bookmark just over 4 KiB is about 50 KB of URI,
/// under the HTTP server's 64 KiB limit (beyond it the server answers 414 or 431 before any
/// handler runs; schemathesis found both, at 48 and 16 KiB). A real bookmark is base64url, one
/// byte a character: a frontier of a few hundred merge points. An answer stops before its
/// bookmark would pass [`FRONTIER_BUDGET`].
pub const MAX_LINEAGE_BOOKMARK: usize = 4 * 1024;
/// What an answer lets its bookmark grow to (estimated), leaving room below the maximum.
const FRONTIER_BUDGET: usize = 3 * 1024;
/// Estimated bookmark bytes per walked mark (8 bytes, base64 twice).
const MARK_BYTES: usize = 15;
/// The most cursors a bookmark's frontier may hold (a real one holds at most about one per
/// node of the answer that produced it, plus one continuation per cut fan-out).
const MAX_FRONTIER: usize = 4 * MAX_LINEAGE_NODES;

/// A node of a lineage graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "node", rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "lineage graphs are small; boxing would only add indirection"
)]
pub enum LineageNode {
    Entity { entity: Entity },
    Contract { contract: ProcessingContract },
    Agent { agent: AgentRef },
}

/// A PROV relation between two lineage nodes, with the transaction that recorded it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct Relation {
    pub relation: RelationKind,
    pub from: String,
    pub to: String,
    pub tx_id: String,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum RelationKind {
    /// activity used data (an EXEC).
    Used,
    /// data wasGeneratedBy activity.
    WasGeneratedBy,
    /// data wasDerivedFrom data.
    WasDerivedFrom,
    /// activity wasAssociatedWith agent (the orchestrator that placed or contracted it).
    WasAssociatedWith,
    /// data wasAttributedTo agent (the identity that recorded it).
    WasAttributedTo,
    /// container was placed on device (ORCHESTRATE(deployed, location)).
    PlacedOn,
    /// activity acted under contract.
    UnderContract,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Lineage {
    pub root: String,
    pub direction: Direction,
    pub depth: u32,
    /// Node id → node. Entity and contract ids as given; agents by `<msp>/<cn>`. Every node a
    /// relation of this answer names is here (so a page of a paged walk stands alone).
    pub nodes: BTreeMap<String, LineageNode>,
    pub relations: BTreeSet<Relation>,
    /// The walk stopped at `limit` nodes or at `fan_out` neighbours of some node: this is part
    /// of the lineage, and `bookmark` continues it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Pass back as `bookmark` (with the same id, direction and depth) for the next part;
    /// empty when the lineage is complete.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bookmark: String,
}

/// One step of the walk still to be taken: a data item to walk up or down, or an index (or
/// list) of neighbours to follow from `at` on. A bookmark carries a queue of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    id: String,
    level: u32,
    step: Step,
    /// Where a neighbour step continues: the tail of the index key after the step's prefix,
    /// or for `inputs` the position in `derived_from`. Empty: from the start.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Step {
    /// Walk a data item upstream: its generation and contracts, then its inputs.
    Up,
    /// Walk a data item downstream: its generation (below the root), then users and outputs.
    Down,
    /// The data an activity root generated (`tom.generated`), walked downstream.
    Generated,
    /// The contracts an activity root is the contractor of (`tom.contract-by-contractor`).
    Contracts,
    /// A data item's inputs (`derived_from`), walked upstream.
    Inputs,
    /// The EXEC in which `activity` used the data `id`, looked up through `activity`'s
    /// contracts (`tom.used` is keyed by data and contract), so a popular input costs nothing.
    ExecOf { activity: String },
    /// The executions that used a data item (`tom.used`).
    Users,
    /// The data derived from a data item (`tom.derived`), walked downstream.
    Derived,
}

impl Cursor {
    /// About what this cursor adds to a bookmark (JSON, then base64).
    fn cost(&self) -> usize {
        let activity = match &self.step {
            Step::ExecOf { activity } => activity.len() + 24,
            _ => 0,
        };
        // An index-key tail holds `\0`s, which JSON writes as six characters.
        (self.id.len() + 6 * self.at.len() + activity + 44) * 4 / 3
    }
}

impl Step {
    /// Whether following this step finds data items to walk (so cutting it short must not
    /// let deeper levels run first, or a node could be reached the long way round).
    fn discovers(&self) -> bool {
        matches!(self, Step::Inputs | Step::Derived | Step::Generated)
    }
}

/// What a bookmark holds (base64url of this as JSON): the query it continues, the frontier in
/// walk order, and 8-byte SHA-256 prefixes of the data items (and EXEC lookups) already
/// walked that another path could reach again (the merge points of the DAG), so no later part
/// walks one twice. Items only one path reaches (a tree, e.g. a device's many readings) need
/// no mark, which keeps a bookmark small.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Frontier {
    root: String,
    direction: Direction,
    depth: u32,
    queue: Vec<Cursor>,
    seen: String,
}

/// How running one cursor ended.
enum Run {
    Done,
    /// `fan_out` neighbours followed; the rest continue in the next answer.
    FanOut(Cursor),
    /// The answer is full (`limit` nodes or the step budget); continue here.
    Full(Cursor),
}

type Mark = [u8; 8];

/// The walk's dedup mark of a data item (`d`) or an EXEC lookup (`x`).
fn mark(tag: u8, text: &str) -> Mark {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[tag]);
    ctx.update(text.as_bytes());
    let digest = ctx.finish();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest.as_ref()[..8]);
    out
}

struct LineageBuilder<'c, 'a> {
    ctx: &'c Ctx<'a>,
    nodes: BTreeMap<String, LineageNode>,
    relations: BTreeSet<Relation>,
    /// Reads already made in this answer (a node repeated by many neighbours is read once).
    entities: BTreeMap<String, Option<Entity>>,
    contracts: BTreeMap<String, Option<ProcessingContract>>,
    /// Data items (and EXEC lookups) walked in this or an earlier part.
    seen: BTreeSet<Mark>,
    root: String,
    up: bool,
    depth: u32,
    limit: usize,
    fan_out: u32,
    /// Steps (a walk of one data item, or one neighbour) taken, and the most one answer may
    /// take: a part whose neighbours add no new nodes still stops.
    steps: usize,
    max_steps: usize,
    /// The estimated bookmark bytes of the cursors still to run (see [`Cursor::cost`]).
    queued: usize,
    // The step in progress, undone if it overfills the answer.
    added_nodes: Vec<String>,
    added_relations: Vec<Relation>,
    added_marks: Vec<Mark>,
    pushed: Vec<Cursor>,
}

impl LineageBuilder<'_, '_> {
    fn begin(&mut self) {
        self.added_nodes.clear();
        self.added_relations.clear();
        self.added_marks.clear();
        self.pushed.clear();
    }

    /// End a step: keep it, or (when it took the answer past `limit` and is not the answer's
    /// first step) undo it and report `false`, so that the step is the next part's first.
    fn settle(&mut self, queue: &mut VecDeque<Cursor>) -> bool {
        let pushed: usize = self.pushed.iter().map(Cursor::cost).sum();
        let bookmark = self.queued + pushed + self.seen.len() * MARK_BYTES;
        if (self.nodes.len() > self.limit || bookmark > FRONTIER_BUDGET) && self.steps > 0 {
            for id in self.added_nodes.drain(..) {
                self.nodes.remove(&id);
            }
            for relation in self.added_relations.drain(..) {
                self.relations.remove(&relation);
            }
            for m in self.added_marks.drain(..) {
                self.seen.remove(&m);
            }
            self.pushed.clear();
            return false;
        }
        self.steps += 1;
        self.queued += pushed;
        queue.extend(self.pushed.drain(..));
        self.begin();
        true
    }

    fn insert_node(&mut self, id: &str, node: LineageNode) {
        if !self.nodes.contains_key(id) {
            self.nodes.insert(id.to_owned(), node);
            self.added_nodes.push(id.to_owned());
        }
    }

    fn relate(&mut self, relation: RelationKind, from: &str, to: &str, tx_id: &str) {
        let relation = Relation {
            relation,
            from: from.to_owned(),
            to: to.to_owned(),
            tx_id: tx_id.to_owned(),
        };
        if self.relations.insert(relation.clone()) {
            self.added_relations.push(relation);
        }
    }

    /// Queue `cursor` unless the walk has taken it already (`mark`). Only a step that another
    /// path may reach again (`merge`) is remembered; any other is reached exactly once.
    fn push_once(&mut self, mark: Mark, merge: bool, cursor: Cursor) {
        if self.first_time(mark, merge) {
            self.pushed.push(cursor);
        }
    }

    /// Whether the walk reaches `mark` for the first time (remembering it if `merge`).
    fn first_time(&mut self, mark: Mark, merge: bool) -> bool {
        if !merge {
            return !self.seen.contains(&mark);
        }
        if self.seen.insert(mark) {
            self.added_marks.push(mark);
            return true;
        }
        false
    }

    /// Whether a data item reached downstream may be reached again: by another of its inputs,
    /// or by both an input and the activity root that generated it.
    fn merges_down(&mut self, data: &str) -> Result<bool, ContractError> {
        Ok(match self.read_entity(data)? {
            Some(Entity::Data(d)) => {
                d.derived_from.len() + usize::from(d.generated_by == self.root) > 1
            }
            _ => false,
        })
    }

    /// Whether an input reached upstream may be reached again: it has more than one output
    /// (two entries of `tom.derived` tell; no more are read).
    fn merges_up(&mut self, input: &str) -> Result<bool, ContractError> {
        let (start, end) = keys::prefix_range(keys::DERIVED, &[input])?;
        let (rows, _) = self
            .ctx
            .stub
            .get_state_by_range_with_pagination(&start, &end, 2, "")?;
        Ok(rows.len() > 1)
    }

    fn agent(&mut self, agent: &AgentRef) {
        if !self.nodes.contains_key(&agent.id) {
            self.insert_node(
                &agent.id,
                LineageNode::Agent {
                    agent: agent.clone(),
                },
            );
        }
    }

    fn read_entity(&mut self, id: &str) -> Result<Option<Entity>, ContractError> {
        if let Some(known) = self.entities.get(id) {
            return Ok(known.clone());
        }
        let entity = self.ctx.entity(id)?;
        self.entities.insert(id.to_owned(), entity.clone());
        Ok(entity)
    }

    /// Add an entity node (and, for activities, where they ran and who orchestrated them).
    fn entity(&mut self, id: &str) -> Result<Option<Entity>, ContractError> {
        let Some(entity) = self.read_entity(id)? else {
            return Ok(None);
        };
        if self.nodes.contains_key(id) {
            return Ok(Some(entity));
        }
        self.insert_node(
            id,
            LineageNode::Entity {
                entity: entity.clone(),
            },
        );
        match &entity {
            Entity::Container(c) => {
                self.agent(&c.joined.by);
                self.relate(
                    RelationKind::WasAssociatedWith,
                    &c.id,
                    &c.joined.by.id,
                    &c.joined.tx_id,
                );
                if let Some(p) = &c.placement {
                    self.agent(&p.stamp.by);
                    self.relate(
                        RelationKind::WasAssociatedWith,
                        &c.id,
                        &p.stamp.by.id,
                        &p.stamp.tx_id,
                    );
                }
            }
            Entity::Device(d) => {
                self.agent(&d.joined.by);
                self.relate(
                    RelationKind::WasAssociatedWith,
                    &d.id,
                    &d.joined.by.id,
                    &d.joined.tx_id,
                );
            }
            Entity::Data(_) => {}
        }
        Ok(Some(entity))
    }

    fn contract(&mut self, id: &str) -> Result<(), ContractError> {
        if self.nodes.contains_key(id) {
            return Ok(());
        }
        let contract = match self.contracts.get(id) {
            Some(known) => known.clone(),
            None => {
                let read = self.ctx.contract(id)?;
                self.contracts.insert(id.to_owned(), read.clone());
                read
            }
        };
        if let Some(contract) = contract {
            self.agent(&contract.defined.by);
            self.relate(
                RelationKind::WasAssociatedWith,
                &contract.contractor,
                &contract.defined.by.id,
                &contract.defined.tx_id,
            );
            self.insert_node(id, LineageNode::Contract { contract });
        }
        Ok(())
    }

    /// How a data item came to be: generator, host device, recorder.
    fn generation(&mut self, data: &Data) -> Result<(), ContractError> {
        let tx = &data.recorded.tx_id;
        self.entity(&data.generated_by)?;
        self.relate(
            RelationKind::WasGeneratedBy,
            &data.id,
            &data.generated_by,
            tx,
        );
        if let Some(host) = &data.host_device {
            self.entity(host)?;
            self.relate(RelationKind::PlacedOn, &data.generated_by, host, tx);
        }
        self.agent(&data.recorded.by);
        self.relate(
            RelationKind::WasAttributedTo,
            &data.id,
            &data.recorded.by.id,
            tx,
        );
        Ok(())
    }

    /// One EXEC (by its index entry `key` → `tx`) in which an activity used `data`: the
    /// activity, its contract, where it ran and who orchestrated it. `only`: skip EXECs of
    /// other activities.
    fn exec(
        &mut self,
        data: &str,
        key: &str,
        tx: &[u8],
        only: Option<&str>,
    ) -> Result<(), ContractError> {
        let tx_id = String::from_utf8_lossy(tx).into_owned();
        let Some(record) = self
            .ctx
            .get::<LedgerRecord>(&keys::key(keys::RECORD, &[&tx_id])?)?
        else {
            return Err(ContractError::CorruptState {
                key: key.to_owned(),
                detail: format!("index names missing record {tx_id}"),
            });
        };
        let RecordBody::ExecContract {
            activity: user,
            contract,
            host_device,
            ..
        } = &record.body
        else {
            return Ok(());
        };
        if only.is_some_and(|a| a != user) {
            return Ok(());
        }
        self.entity(data)?;
        self.entity(user)?;
        self.relate(RelationKind::Used, user, data, &tx_id);
        self.contract(contract)?;
        self.relate(RelationKind::UnderContract, user, contract, &tx_id);
        if let Some(host) = host_device {
            self.entity(host)?;
            self.relate(RelationKind::PlacedOn, user, host, &tx_id);
        }
        self.agent(&record.agent);
        self.relate(
            RelationKind::WasAssociatedWith,
            user,
            &record.agent.id,
            &tx_id,
        );
        Ok(())
    }

    /// Walk one data item up or down: its own facts now, its neighbours as cursors. A
    /// neighbour step with nothing to follow is not queued (a leaf, the common case of a wide
    /// fan-out, leaves nothing in the bookmark), so the frontier holds only what goes on.
    fn walk(&mut self, id: &str, level: u32, up: bool) -> Result<(), ContractError> {
        let Some(Entity::Data(data)) = self.entity(id)? else {
            return Ok(());
        };
        let next = |step| Cursor {
            id: data.id.clone(),
            level,
            step,
            at: String::new(),
        };
        if up {
            if level == self.depth {
                return Ok(());
            }
            self.generation(&data)?;
            for contract in &data.fulfils {
                self.contract(contract)?;
                self.relate(
                    RelationKind::UnderContract,
                    &data.generated_by,
                    contract,
                    &data.recorded.tx_id,
                );
            }
            if !data.derived_from.is_empty() {
                self.pushed.push(next(Step::Inputs));
            }
        } else {
            if level > 0 || !self.up {
                // The generation of each downstream item (and of the root, when not going up).
                self.generation(&data)?;
            }
            if level < self.depth {
                for step in [Step::Users, Step::Derived] {
                    if self.has_entries(&step, &data.id)? {
                        self.pushed.push(next(step));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether a neighbour step's index has any entry (one row is read).
    fn has_entries(&self, step: &Step, id: &str) -> Result<bool, ContractError> {
        let Some((start, end)) = Self::index_of(step, id)? else {
            return Ok(false);
        };
        let (rows, _) = self
            .ctx
            .stub
            .get_state_by_range_with_pagination(&start, &end, 1, "")?;
        Ok(!rows.is_empty())
    }

    /// The index a neighbour step reads, as a `[start, end)` key range.
    fn index_of(step: &Step, id: &str) -> Result<Option<(String, String)>, ContractError> {
        let (object_type, attribute) = match step {
            Step::Generated => (keys::GENERATED, id),
            Step::Contracts => (keys::CONTRACT_BY_CONTRACTOR, id),
            Step::ExecOf { activity } => (keys::CONTRACT_BY_CONTRACTOR, activity.as_str()),
            Step::Users => (keys::USED, id),
            Step::Derived => (keys::DERIVED, id),
            Step::Up | Step::Down | Step::Inputs => return Ok(None),
        };
        Ok(Some(keys::prefix_range(object_type, &[attribute])?))
    }

    /// Follow one index entry of a neighbour step.
    fn neighbour(&mut self, cursor: &Cursor, key: &str, value: &[u8]) -> Result<(), ContractError> {
        let second = || {
            split_composite_key(key)
                .and_then(|(_, a)| a.get(1).map(|s| (*s).to_owned()))
                .ok_or_else(|| ContractError::CorruptState {
                    key: key.to_owned(),
                    detail: "not a two-part index key".to_owned(),
                })
        };
        match &cursor.step {
            Step::Generated => {
                let data = second()?;
                self.entity(&data)?;
                if self.depth >= 1 {
                    let merge = self.merges_down(&data)?;
                    if self.first_time(mark(b'd', &data), merge) {
                        self.walk(&data, 1, false)?;
                    }
                }
            }
            Step::Contracts => {
                let contract = second()?;
                self.entity(&cursor.id)?;
                self.contract(&contract)?;
                self.relate(RelationKind::UnderContract, &cursor.id, &contract, "");
            }
            Step::ExecOf { activity } => {
                let used = keys::key(keys::USED, &[&cursor.id, &second()?])?;
                if let Some(tx) = self.ctx.stub.get_state(&used)? {
                    self.exec(&cursor.id, &used, &tx, Some(activity))?;
                }
            }
            Step::Users => self.exec(&cursor.id, key, value, None)?,
            Step::Derived => {
                let output = second()?;
                self.entity(&cursor.id)?;
                self.entity(&output)?;
                self.relate(
                    RelationKind::WasDerivedFrom,
                    &output,
                    &cursor.id,
                    &String::from_utf8_lossy(value),
                );
                let merge = self.merges_down(&output)?;
                if self.first_time(mark(b'd', &output), merge) {
                    self.walk(&output, cursor.level + 1, false)?;
                }
            }
            Step::Up | Step::Down | Step::Inputs => {}
        }
        Ok(())
    }

    /// Follow one input of a data item upstream.
    fn input(&mut self, cursor: &Cursor, data: &Data, input: &str) -> Result<(), ContractError> {
        self.entity(&data.id)?;
        self.entity(input)?;
        self.relate(
            RelationKind::WasDerivedFrom,
            &data.id,
            input,
            &data.recorded.tx_id,
        );
        let merge = self.merges_up(input)?;
        if self.first_time(mark(b'd', input), merge) {
            self.walk(input, cursor.level + 1, true)?;
        }
        // How the generator came to use it: its EXEC of the input, first under the contracts
        // the output fulfils (point reads, and the keys evidence bundles made before bounded
        // walks hold), then under any other contract of the generator (a paged scan).
        for contract in &data.fulfils {
            let used = keys::key(keys::USED, &[input, contract])?;
            if let Some(tx) = self.ctx.stub.get_state(&used)? {
                self.exec(input, &used, &tx, Some(&data.generated_by))?;
            }
        }
        self.push_once(
            mark(b'x', &format!("{input}\u{0}{}", data.generated_by)),
            merge,
            Cursor {
                id: input.to_owned(),
                level: cursor.level,
                step: Step::ExecOf {
                    activity: data.generated_by.clone(),
                },
                at: String::new(),
            },
        );
        Ok(())
    }

    /// Run one cursor: a walk of one data item, or up to `fan_out` neighbours.
    fn run(&mut self, cursor: Cursor, queue: &mut VecDeque<Cursor>) -> Result<Run, ContractError> {
        let left = self.max_steps.saturating_sub(self.steps);
        if left == 0 {
            return Ok(Run::Full(cursor));
        }
        let at = |position: String| Cursor {
            at: position,
            ..cursor.clone()
        };
        if let Some((start, end)) = Self::index_of(&cursor.step, &cursor.id)? {
            // One entry more than this answer may follow tells whether the step goes on; it
            // is read (and so part of the query's read set), which keeps a replay exact.
            let n = self.fan_out.min(u32::try_from(left).unwrap_or(u32::MAX));
            let from = format!("{start}{}", cursor.at);
            let (rows, _) =
                self.ctx
                    .stub
                    .get_state_by_range_with_pagination(&from, &end, n + 1, "")?;
            for (i, row) in rows.iter().enumerate() {
                let tail = row.key.get(start.len()..).unwrap_or_default().to_owned();
                if i == n as usize {
                    return Ok(if n == self.fan_out {
                        Run::FanOut(at(tail))
                    } else {
                        Run::Full(at(tail))
                    });
                }
                self.begin();
                self.neighbour(&cursor, &row.key, &row.value)?;
                if !self.settle(queue) {
                    return Ok(Run::Full(at(tail)));
                }
            }
            return Ok(Run::Done);
        }
        if cursor.step == Step::Inputs {
            let Some(Entity::Data(data)) = self.read_entity(&cursor.id)? else {
                return Ok(Run::Done);
            };
            let from: usize = cursor.at.parse().unwrap_or(0);
            for (i, input) in data.derived_from.iter().enumerate().skip(from) {
                if i - from == self.fan_out as usize {
                    return Ok(Run::FanOut(at(i.to_string())));
                }
                if self.steps >= self.max_steps {
                    return Ok(Run::Full(at(i.to_string())));
                }
                self.begin();
                self.input(&cursor, &data, input)?;
                if !self.settle(queue) {
                    return Ok(Run::Full(at(i.to_string())));
                }
            }
            return Ok(Run::Done);
        }
        self.begin();
        self.walk(&cursor.id, cursor.level, cursor.step == Step::Up)?;
        if !self.settle(queue) {
            return Ok(Run::Full(cursor));
        }
        Ok(Run::Done)
    }

    fn encode(&self, req: &requests::LineageQuery, queue: Vec<Cursor>) -> String {
        use base64::Engine;
        let seen: Vec<u8> = self.seen.iter().flatten().copied().collect();
        let frontier = Frontier {
            root: req.id.clone(),
            direction: req.direction,
            depth: self.depth,
            queue,
            seen: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(seen),
        };
        // Serialising plain strings and numbers cannot fail.
        let json = serde_json::to_vec(&frontier).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }
}

/// The frontier and walked set a bookmark carries, checked against the query it claims to
/// continue: every id by its grammar, every position inside its step's index, every level
/// within the depth. A forged bookmark can ask for nothing a fresh query could not.
fn decode_bookmark(
    f: &'static str,
    text: &str,
    req: &requests::LineageQuery,
    depth: u32,
) -> Result<(VecDeque<Cursor>, BTreeSet<Mark>), ContractError> {
    use base64::Engine;
    let bad = |why: String| ContractError::bad(f, format!("bookmark {why}"));
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.as_bytes())
        .map_err(|_| bad("is not a lineage bookmark: not unpadded base64url".into()))?;
    let frontier: Frontier = serde_json::from_slice(&json)
        .map_err(|e| bad(format!("is not a lineage bookmark: {e}")))?;
    if frontier.root != req.id || frontier.direction != req.direction || frontier.depth != depth {
        return Err(bad(format!(
            "continues another query (the lineage of {} direction {:?} depth {}); give the same id, direction and depth",
            frontier.root, frontier.direction, frontier.depth
        )));
    }
    if frontier.queue.len() > MAX_FRONTIER {
        return Err(bad(format!(
            "holds {} steps; at most {MAX_FRONTIER} are possible",
            frontier.queue.len()
        )));
    }
    for cursor in &frontier.queue {
        check_id(f, "bookmark", &cursor.id)?;
        if cursor.level > depth {
            return Err(bad(format!(
                "names level {} beyond depth {depth}",
                cursor.level
            )));
        }
        if let Step::ExecOf { activity } = &cursor.step {
            check_id(f, "bookmark", activity)?;
        }
        let position_ok = match (&cursor.step, cursor.at.as_str()) {
            (_, "") => true,
            (Step::Up | Step::Down, _) => false,
            (Step::Inputs, at) => at.parse::<usize>().is_ok_and(|i| i < crate::ids::MAX_LIST),
            (step, at) => match LineageBuilder::index_of(step, &cursor.id)? {
                Some((start, end)) => format!("{start}{at}") < end,
                None => false,
            },
        };
        if !position_ok {
            return Err(bad(format!(
                "names a position {:?} outside the step it continues",
                cursor.at
            )));
        }
    }
    let seen = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(frontier.seen.as_bytes())
        .ok()
        .filter(|b| b.len() % 8 == 0)
        .ok_or_else(|| bad("has a garbled walked set".into()))?;
    let seen = seen
        .chunks_exact(8)
        .map(|c| {
            let mut m = [0u8; 8];
            m.copy_from_slice(c);
            m
        })
        .collect();
    Ok((frontier.queue.into(), seen))
}

/// `GetLineage`: a breadth-first walk from `id` up (what it came from), down (what came of
/// it) or both, to `depth` derivation steps. The walk reads indexes in pages of `fan_out`
/// entries and stops at `limit` nodes, at `2 × limit` steps (a step: one data item walked or
/// one index entry followed) or before its bookmark passes [`FRONTIER_BUDGET`], so an answer
/// costs what it holds. A step that would overfill the answer is undone and becomes the next
/// part's first, except an answer's first step, which is always kept so paging always moves
/// (a `limit` below one item's immediate context, a handful of nodes, can be exceeded by it).
/// A cut answer is `truncated` and its `bookmark` (the frontier still to walk, in order, and
/// the merge points already walked) continues it, each data item being walked in exactly one
/// part. A part never lets a deeper level run ahead of a cut fan-out, so the parts together
/// are exactly the lineage an unbounded walk would give.
pub fn get_lineage(ctx: &Ctx, req: requests::LineageQuery) -> Result<Lineage, ContractError> {
    let f = ctx.function;
    ctx.caller()?;
    check_id(f, "id", &req.id)?;
    let depth = req.depth.unwrap_or(DEFAULT_DEPTH);
    if depth > MAX_DEPTH {
        return Err(ContractError::bad(
            f,
            format!("depth must be at most {MAX_DEPTH}, got {depth}"),
        ));
    }
    let limit = req.limit.unwrap_or(DEFAULT_LINEAGE_LIMIT);
    if limit as usize > MAX_LINEAGE_NODES {
        return Err(ContractError::bad(
            f,
            format!(
                "limit {limit}: a lineage answer has at most {MAX_LINEAGE_NODES} nodes; ask for a smaller depth or one direction, or continue a truncated answer with its bookmark"
            ),
        ));
    }
    if limit == 0 {
        return Err(ContractError::bad(
            f,
            format!("limit must be 1 to {MAX_LINEAGE_NODES}, got 0"),
        ));
    }
    let fan_out = req.fan_out.unwrap_or(DEFAULT_FAN_OUT);
    if fan_out == 0 || fan_out > MAX_FAN_OUT {
        return Err(ContractError::bad(
            f,
            format!("fan_out must be 1 to {MAX_FAN_OUT}, got {fan_out}"),
        ));
    }
    let up = matches!(req.direction, Direction::Up | Direction::Both);
    let down = matches!(req.direction, Direction::Down | Direction::Both);
    let mut b = LineageBuilder {
        ctx,
        nodes: BTreeMap::new(),
        relations: BTreeSet::new(),
        entities: BTreeMap::new(),
        contracts: BTreeMap::new(),
        seen: BTreeSet::new(),
        root: req.id.clone(),
        up,
        depth,
        limit: limit as usize,
        fan_out,
        steps: 0,
        max_steps: 2 * limit as usize,
        queued: 0,
        added_nodes: Vec::new(),
        added_relations: Vec::new(),
        added_marks: Vec::new(),
        pushed: Vec::new(),
    };
    let cursor = |step| Cursor {
        id: req.id.clone(),
        level: 0,
        step,
        at: String::new(),
    };
    let mut queue = VecDeque::new();
    match req.bookmark.as_deref() {
        None | Some("") => {
            let root = b.entity(&req.id)?.ok_or_else(|| ContractError::NotFound {
                kind: "entity",
                id: req.id.clone(),
            })?;
            // Seeds: a data item itself, or for an activity the data it generated
            // (downstream) and the contracts it acts under (upstream).
            match root {
                Entity::Data(_) => {
                    if up {
                        queue.push_back(cursor(Step::Up));
                    }
                    if down {
                        queue.push_back(cursor(Step::Down));
                    }
                }
                Entity::Device(_) | Entity::Container(_) => {
                    if down {
                        queue.push_back(cursor(Step::Generated));
                    }
                    if up {
                        queue.push_back(cursor(Step::Contracts));
                    }
                }
            }
            b.begin();
        }
        Some(text) => (queue, b.seen) = decode_bookmark(f, text, &req, depth)?,
    }
    b.queued = queue.iter().map(Cursor::cost).sum();
    // Steps that find no data items may run in any order: run them first, so a frontier that
    // filled the last part's bookmark shrinks before anything can grow it again.
    let (settled, finding): (VecDeque<Cursor>, VecDeque<Cursor>) =
        queue.into_iter().partition(|c| !c.step.discovers());
    queue = settled;
    queue.extend(finding);

    let mut deferred = Vec::new();
    let mut resume = None;
    // The level of the first discovering step cut short by `fan_out`: no deeper step that
    // finds data items may run in this answer (its rest could reach nodes at a shallower level
    // than a deeper step); those wait, in order, in `held`.
    let mut cut: Option<u32> = None;
    let mut held = Vec::new();
    while let Some(cursor) = queue.pop_front() {
        if cursor.step.discovers() && cut.is_some_and(|c| cursor.level > c) {
            held.push(cursor);
            continue;
        }
        b.queued = b.queued.saturating_sub(cursor.cost());
        match b.run(cursor, &mut queue)? {
            Run::Done => {}
            Run::FanOut(rest) => {
                b.queued += rest.cost();
                if rest.step.discovers() {
                    cut = Some(cut.map_or(rest.level, |c| c.min(rest.level)));
                }
                deferred.push(rest);
            }
            Run::Full(rest) => {
                resume = Some(rest);
                break;
            }
        }
    }
    let frontier: Vec<Cursor> = resume
        .into_iter()
        .chain(deferred)
        .chain(held)
        .chain(queue)
        .collect();
    let truncated = !frontier.is_empty();
    let bookmark = if truncated {
        b.encode(&req, frontier)
    } else {
        String::new()
    };
    if bookmark.len() > MAX_LINEAGE_BOOKMARK {
        // Only a lineage with thousands of merge points (items reached by several paths) can
        // get here: each must be remembered to walk it once.
        return Err(ContractError::bad(
            f,
            format!(
                "the lineage of {} within depth {depth} has too many items reached by several paths to continue in a bookmark of at most {MAX_LINEAGE_BOOKMARK} bytes; ask for a smaller depth or one direction",
                req.id
            ),
        ));
    }
    Ok(Lineage {
        root: req.id,
        direction: req.direction,
        depth,
        nodes: b.nodes,
        relations: b.relations,
        truncated,
        bookmark,
    })
}

// --- the read transactions --------------------------------------------------------------------

/// A read transaction: anyone with a valid certificate may ask, and it writes nothing.
macro_rules! read_transaction {
    ($($request:ty => $name:literal, $response:ty, $description:literal, |$req:ident, $ctx:ident| $body:expr;)*) => {$(
        impl Transaction for $request {
            const NAME: &'static str = $name;
            const KIND: Kind = Kind::Evaluate;
            const RECORD: Option<RecordKind> = None;
            const CALLERS: Callers = Callers::Anyone;
            const DESCRIPTION: &'static str = $description;
            type Response = $response;

            fn execute(self, ctx: &mut Ctx) -> Result<$response, ContractError> {
                let ($req, $ctx) = (self, &*ctx);
                $body
            }
        }
    )*};
}

read_transaction! {
    requests::GetEntity => "GetEntity", EntityView,
        "a device, container, data item or contract by id",
        |req, ctx| get_entity(ctx, req.0);
    requests::GetHistory => "GetHistory", Vec<HistoryEntry>,
        "every committed version of an entity or contract",
        |req, ctx| get_history(ctx, req.0);
    requests::GetOrg => "GetOrg", Org,
        "a registered organisation",
        |req, ctx| get_org(ctx, req.0);
    requests::GetRecord => "GetRecord", LedgerRecord,
        "the ledger record a transaction wrote",
        |req, ctx| get_record(ctx, req.0);
    requests::GetLineage => "GetLineage", Lineage,
        "lineage of an entity upstream and/or downstream to a depth",
        |req, ctx| get_lineage(ctx, req.0);
    requests::RecordsQuery => "QueryRecords", RecordPage,
        "records by agent or entity in a time window, paginated",
        |req, ctx| query_records(ctx, req);
    requests::DevicesQuery => "ListDevices", ListPage<Entity>,
        "devices by organisation and state (joined, left, available, unavailable), paginated",
        |req, ctx| list_devices(ctx, req);
    requests::ContainersQuery => "ListContainers", ListPage<Entity>,
        "containers placed on a device, or by organisation and state, paginated",
        |req, ctx| list_containers(ctx, req);
    requests::ContractsQuery => "ListContracts", ListPage<ContractView>,
        "contracts by effective state at the query time (active, fulfilled, violated), paginated",
        |req, ctx| list_contracts(ctx, req);
    requests::ExportProv => "ExportProv", serde_json::Value,
        "W3C PROV-JSON document of an entity's lineage",
        |req, ctx| Ok(crate::prov::to_prov_json(&get_lineage(ctx, req.0)?));
}
