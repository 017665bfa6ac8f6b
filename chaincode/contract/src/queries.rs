//! The audit queries (read-only transactions): entities, history, lineage, records by agent or
//! time window. Every answer is built from ordered scans and `BTreeMap`/`BTreeSet`s, so every peer
//! returns the same bytes.

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
/// The most nodes one lineage answer holds (a few MiB at most): a wider lineage is refused
/// with the advice to ask for less depth, so no query can build an unbounded response.
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
    /// Node id → node. Entity and contract ids as given; agents by `<msp>/<cn>`.
    pub nodes: BTreeMap<String, LineageNode>,
    pub relations: BTreeSet<Relation>,
}

struct LineageBuilder<'c, 'a> {
    ctx: &'c Ctx<'a>,
    nodes: BTreeMap<String, LineageNode>,
    relations: BTreeSet<Relation>,
}

impl LineageBuilder<'_, '_> {
    /// Refuse a lineage that has grown past [`MAX_LINEAGE_NODES`].
    fn check_size(&self, root: &str, depth: u32) -> Result<(), ContractError> {
        if self.nodes.len() <= MAX_LINEAGE_NODES {
            return Ok(());
        }
        Err(ContractError::bad(
            self.ctx.function,
            format!(
                "the lineage of {root} within depth {depth} has more than {MAX_LINEAGE_NODES} nodes; ask for a smaller depth or one direction"
            ),
        ))
    }

    fn relate(&mut self, relation: RelationKind, from: &str, to: &str, tx_id: &str) {
        self.relations.insert(Relation {
            relation,
            from: from.to_owned(),
            to: to.to_owned(),
            tx_id: tx_id.to_owned(),
        });
    }

    fn agent(&mut self, agent: &AgentRef) {
        self.nodes
            .entry(agent.id.clone())
            .or_insert_with(|| LineageNode::Agent {
                agent: agent.clone(),
            });
    }

    /// Add an entity node (and, for activities, where they ran and who orchestrated them).
    fn entity(&mut self, id: &str) -> Result<Option<Entity>, ContractError> {
        if let Some(LineageNode::Entity { entity }) = self.nodes.get(id) {
            return Ok(Some(entity.clone()));
        }
        let Some(entity) = self.ctx.entity(id)? else {
            return Ok(None);
        };
        self.nodes.insert(
            id.to_owned(),
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
        if let Some(contract) = self.ctx.contract(id)? {
            self.agent(&contract.defined.by);
            self.relate(
                RelationKind::WasAssociatedWith,
                &contract.contractor,
                &contract.defined.by.id,
                &contract.defined.tx_id,
            );
            self.nodes
                .insert(id.to_owned(), LineageNode::Contract { contract });
        }
        Ok(())
    }

    /// How a data item came to be: generator, host device, contracts, recorder, inputs.
    fn data_upstream(&mut self, data: &Data) -> Result<Vec<String>, ContractError> {
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
        for contract in &data.fulfils {
            self.contract(contract)?;
            self.relate(
                RelationKind::UnderContract,
                &data.generated_by,
                contract,
                tx,
            );
        }
        for input in &data.derived_from {
            self.relate(RelationKind::WasDerivedFrom, &data.id, input, tx);
            self.uses(input, Some(&data.generated_by))?;
        }
        Ok(data.derived_from.clone())
    }

    /// The EXECs in which `data` joined an activity (all, or only `activity`'s).
    fn uses(&mut self, data: &str, activity: Option<&str>) -> Result<Vec<String>, ContractError> {
        let mut users = Vec::new();
        for (key, tx) in self.ctx.scan(keys::USED, &[data])? {
            let tx_id = String::from_utf8_lossy(&tx).into_owned();
            let Some(record) = self
                .ctx
                .get::<LedgerRecord>(&keys::key(keys::RECORD, &[&tx_id])?)?
            else {
                return Err(ContractError::CorruptState {
                    key,
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
                continue;
            };
            if activity.is_some_and(|a| a != user) {
                continue;
            }
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
            users.push(user.clone());
        }
        Ok(users)
    }

    /// What came of a data item: who used it and what was derived from it.
    fn data_downstream(&mut self, data: &Data) -> Result<Vec<String>, ContractError> {
        self.uses(&data.id, None)?;
        let mut derived = Vec::new();
        for (key, tx) in self.ctx.scan(keys::DERIVED, &[&data.id])? {
            let Some(output) =
                split_composite_key(&key).and_then(|(_, a)| a.get(1).map(|s| (*s).to_owned()))
            else {
                continue;
            };
            self.relate(
                RelationKind::WasDerivedFrom,
                &output,
                &data.id,
                &String::from_utf8_lossy(&tx),
            );
            derived.push(output);
        }
        Ok(derived)
    }

    /// Data an activity (device or container) generated.
    fn generated_by(&mut self, activity: &str) -> Result<Vec<String>, ContractError> {
        let mut out = Vec::new();
        for (key, _) in self.ctx.scan(keys::GENERATED, &[activity])? {
            if let Some(id) =
                split_composite_key(&key).and_then(|(_, a)| a.get(1).map(|s| (*s).to_owned()))
            {
                out.push(id);
            }
        }
        Ok(out)
    }
}

pub fn get_lineage(ctx: &Ctx, req: requests::LineageQuery) -> Result<Lineage, ContractError> {
    ctx.caller()?;
    check_id(ctx.function, "id", &req.id)?;
    let depth = req.depth.unwrap_or(DEFAULT_DEPTH);
    if depth > MAX_DEPTH {
        return Err(ContractError::bad(
            ctx.function,
            format!("depth must be at most {MAX_DEPTH}, got {depth}"),
        ));
    }
    let mut b = LineageBuilder {
        ctx,
        nodes: BTreeMap::new(),
        relations: BTreeSet::new(),
    };
    let root = b.entity(&req.id)?.ok_or_else(|| ContractError::NotFound {
        kind: "entity",
        id: req.id.clone(),
    })?;
    let up = matches!(req.direction, Direction::Up | Direction::Both);
    let down = matches!(req.direction, Direction::Down | Direction::Both);

    // Seeds: a data item itself, or for an activity the data it generated (downstream) and
    // the inputs it used (upstream).
    let mut up_queue: VecDeque<(String, u32)> = VecDeque::new();
    let mut down_queue: VecDeque<(String, u32)> = VecDeque::new();
    match &root {
        Entity::Data(_) => {
            up_queue.push_back((req.id.clone(), 0));
            down_queue.push_back((req.id.clone(), 0));
        }
        Entity::Device(_) | Entity::Container(_) => {
            if down {
                for id in b.generated_by(&req.id)? {
                    b.entity(&id)?;
                    down_queue.push_back((id, 1));
                }
            }
            if up {
                for (key, _) in ctx.scan(keys::CONTRACT_BY_CONTRACTOR, &[&req.id])? {
                    if let Some(contract) = split_composite_key(&key)
                        .and_then(|(_, a)| a.get(1).map(|s| (*s).to_owned()))
                    {
                        b.contract(&contract)?;
                        b.relate(RelationKind::UnderContract, &req.id, &contract, "");
                    }
                }
            }
        }
    }
    let mut seen_up = BTreeSet::new();
    while let Some((id, level)) = up_queue.pop_front().filter(|_| up) {
        b.check_size(&req.id, depth)?;
        if level > depth || !seen_up.insert(id.clone()) {
            continue;
        }
        let Some(Entity::Data(data)) = b.entity(&id)? else {
            continue;
        };
        if level == depth {
            continue;
        }
        for input in b.data_upstream(&data)? {
            up_queue.push_back((input, level + 1));
        }
    }
    let mut seen_down = BTreeSet::new();
    while let Some((id, level)) = down_queue.pop_front().filter(|_| down) {
        b.check_size(&req.id, depth)?;
        if level > depth || !seen_down.insert(id.clone()) {
            continue;
        }
        let Some(Entity::Data(data)) = b.entity(&id)? else {
            continue;
        };
        if level > 0 || !up {
            // The generation of each downstream item (and of the root, when not going up).
            b.entity(&data.generated_by)?;
            b.relate(
                RelationKind::WasGeneratedBy,
                &data.id,
                &data.generated_by,
                &data.recorded.tx_id,
            );
            b.agent(&data.recorded.by);
            b.relate(
                RelationKind::WasAttributedTo,
                &data.id,
                &data.recorded.by.id,
                &data.recorded.tx_id,
            );
            if let Some(host) = &data.host_device {
                b.entity(host)?;
                b.relate(
                    RelationKind::PlacedOn,
                    &data.generated_by,
                    host,
                    &data.recorded.tx_id,
                );
            }
        }
        if level == depth {
            continue;
        }
        for output in b.data_downstream(&data)? {
            down_queue.push_back((output, level + 1));
        }
    }
    b.check_size(&req.id, depth)?;
    Ok(Lineage {
        root: req.id,
        direction: req.direction,
        depth,
        nodes: b.nodes,
        relations: b.relations,
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
