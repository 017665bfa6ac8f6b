//! Export of a lineage graph as a W3C PROV-JSON document (<https://www.w3.org/Submission/prov-json/>).
//!
//! Mapping (paper, Section IV-B: entities are data, containers and devices; activities are the
//! processing components; agents act on whose behalf):
//!
//! | TOM                                   | PROV                                             |
//! |---------------------------------------|--------------------------------------------------|
//! | data item                             | entity `tom:<id>` (type `tom:Data`)              |
//! | container                             | entity `tom:<id>` (type `tom:Container`) and its activity `tom:activity.<id>` |
//! | device                                | agent `tom:<id>` (type `tom:Device`); a device that generates or uses data also has an activity `tom:activity.<id>` |
//! | contract                              | entity `tom:<id>` (type `prov:Plan`)             |
//! | orchestrator / recording identity     | agent `tom:agent.<msp>.<cn>`                     |
//! | EXEC (data joined an activity)        | `used(activity, data)`                           |
//! | activity acting under a contract      | `used(activity, contract)`                       |
//! | PROV-DATA                             | `wasGeneratedBy(data, activity)`, `wasAttributedTo(data, recorder)` |
//! | derived_from                          | `wasDerivedFrom(data, input)`                    |
//! | placement / orchestration             | `wasAssociatedWith(activity, device or orchestrator)` |
//! | device identified by an orchestrator  | `actedOnBehalfOf(device, orchestrator)`          |
//!
//! Relations are deduplicated by their end points; records keep the first transaction id.
//!
//! A lineage that was cut short (`truncated`, see `queries::get_lineage`) must not pass for
//! the whole graph: its document carries one more entity, `tom:lineage.<root>` of type
//! `tom:PartialLineage`, with `tom:truncated` = true and the `tom:bookmark` that continues it.
//! (PROV-JSON has no place for attributes of the document itself, and the Python `prov`
//! reader refuses unknown top-level keys, so the statement is an entity.)

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::model::{Entity, EntityType};
use crate::queries::{Lineage, LineageNode, RelationKind};

pub const NAMESPACE: &str = "urn:tom:";

fn qn(local: &str) -> String {
    format!("tom:{local}")
}

fn agent_qn(agent_id: &str) -> String {
    let local: String = agent_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("tom:agent.{local}")
}

fn activity_qn(id: &str) -> String {
    format!("tom:activity.{id}")
}

/// The PROV id of the statement that a document holds only part of `root`'s lineage.
pub fn partial_qn(root: &str) -> String {
    format!("tom:lineage.{root}")
}

fn typed(value: &str) -> Value {
    json!({ "$": value, "type": "prov:QUALIFIED_NAME" })
}

/// Build the PROV-JSON document for a lineage graph.
pub fn to_prov_json(lineage: &Lineage) -> Value {
    let mut entities = Map::new();
    let mut activities = Map::new();
    let mut agents = Map::new();
    // Node id → its PROV id when it acts (activity) and when it is an agent.
    let mut activity_of: BTreeMap<&str, String> = BTreeMap::new();
    let mut agent_of: BTreeMap<&str, String> = BTreeMap::new();

    // Devices that generate or use data act as activities too.
    let mut acting: BTreeSet<&str> = BTreeSet::new();
    for r in &lineage.relations {
        match r.relation {
            RelationKind::Used => {
                acting.insert(&r.from);
            }
            RelationKind::WasGeneratedBy => {
                acting.insert(&r.to);
            }
            _ => {}
        }
    }

    for (id, node) in &lineage.nodes {
        match node {
            LineageNode::Entity {
                entity: Entity::Data(d),
            } => {
                entities.insert(
                    qn(id),
                    json!({
                        "prov:type": typed("tom:Data"),
                        "tom:kind": d.kind,
                        "tom:hash": d.hash,
                        "tom:size": d.size,
                        "tom:location": d.location,
                        "tom:recordedIn": d.recorded.tx_id,
                    }),
                );
            }
            LineageNode::Entity {
                entity: Entity::Container(c),
            } => {
                entities.insert(
                    qn(id),
                    json!({
                        "prov:type": typed("tom:Container"),
                        "tom:image": c.image,
                        "tom:digest": c.digest,
                        "tom:org": c.org,
                    }),
                );
                let mut activity = Map::new();
                activity.insert("prov:type".into(), typed("tom:ContainerActivity"));
                activity.insert("tom:container".into(), Value::String(qn(id)));
                if let Some(p) = &c.placement {
                    activity.insert("tom:location".into(), Value::String(qn(&p.device)));
                }
                activities.insert(activity_qn(id), Value::Object(activity));
                activity_of.insert(id, activity_qn(id));
            }
            LineageNode::Entity {
                entity: Entity::Device(d),
            } => {
                agents.insert(
                    qn(id),
                    json!({
                        "prov:type": typed("tom:Device"),
                        "tom:kind": d.kind,
                        "tom:org": d.org,
                        "tom:certificate": d.certificate.sha256,
                    }),
                );
                agent_of.insert(id, qn(id));
                if acting.contains(id.as_str()) {
                    activities.insert(
                        activity_qn(id),
                        json!({ "prov:type": typed("tom:DeviceActivity"), "tom:device": qn(id) }),
                    );
                    activity_of.insert(id, activity_qn(id));
                }
            }
            LineageNode::Contract { contract } => {
                entities.insert(
                    qn(id),
                    json!({
                        "prov:type": typed("prov:Plan"),
                        "tom:contractor": qn(&contract.contractor),
                        "tom:deadline": contract.deadline.to_rfc3339(),
                        "tom:state": contract.state.to_string(),
                    }),
                );
            }
            LineageNode::Agent { agent } => {
                let qid = agent_qn(&agent.id);
                agents.insert(
                    qid.clone(),
                    json!({
                        "prov:type": typed("prov:Person"),
                        "tom:msp": agent.msp_id,
                        "tom:commonName": agent.common_name,
                        "tom:role": agent.role.map(|r| r.as_str()).unwrap_or("none"),
                    }),
                );
                agent_of.insert(id, qid);
            }
        }
    }

    let data_ids: BTreeSet<&str> = lineage
        .nodes
        .iter()
        .filter(|(_, n)| matches!(n, LineageNode::Entity { entity } if entity.entity_type() == EntityType::Data))
        .map(|(id, _)| id.as_str())
        .collect();

    let mut relations: BTreeMap<&'static str, BTreeMap<(String, String), Value>> = BTreeMap::new();
    let mut add = |kind: &'static str, key: (String, String), value: Value| {
        relations
            .entry(kind)
            .or_default()
            .entry(key)
            .or_insert(value);
    };
    for r in &lineage.relations {
        let tx = json!(r.tx_id);
        match r.relation {
            RelationKind::Used => {
                if let Some(a) = activity_of.get(r.from.as_str()) {
                    add(
                        "used",
                        (a.clone(), qn(&r.to)),
                        json!({ "prov:activity": a, "prov:entity": qn(&r.to), "tom:tx": tx }),
                    );
                }
            }
            RelationKind::UnderContract => {
                if let Some(a) = activity_of.get(r.from.as_str()) {
                    add(
                        "used",
                        (a.clone(), qn(&r.to)),
                        json!({ "prov:activity": a, "prov:entity": qn(&r.to), "prov:role": "tom:contract", "tom:tx": tx }),
                    );
                }
            }
            RelationKind::WasGeneratedBy => {
                if let Some(a) = activity_of.get(r.to.as_str()) {
                    add(
                        "wasGeneratedBy",
                        (qn(&r.from), a.clone()),
                        json!({ "prov:entity": qn(&r.from), "prov:activity": a, "tom:tx": tx }),
                    );
                }
            }
            RelationKind::WasDerivedFrom => {
                if data_ids.contains(r.from.as_str()) && data_ids.contains(r.to.as_str()) {
                    add(
                        "wasDerivedFrom",
                        (qn(&r.from), qn(&r.to)),
                        json!({ "prov:generatedEntity": qn(&r.from), "prov:usedEntity": qn(&r.to), "tom:tx": tx }),
                    );
                }
            }
            RelationKind::WasAttributedTo => {
                if let Some(agent) = agent_of.get(r.to.as_str()) {
                    add(
                        "wasAttributedTo",
                        (qn(&r.from), agent.clone()),
                        json!({ "prov:entity": qn(&r.from), "prov:agent": agent, "tom:tx": tx }),
                    );
                }
            }
            RelationKind::WasAssociatedWith | RelationKind::PlacedOn => {
                let Some(agent) = agent_of.get(r.to.as_str()) else {
                    continue;
                };
                if let Some(a) = activity_of.get(r.from.as_str()) {
                    add(
                        "wasAssociatedWith",
                        (a.clone(), agent.clone()),
                        json!({ "prov:activity": a, "prov:agent": agent, "tom:tx": tx }),
                    );
                } else if let Some(delegate) = agent_of.get(r.from.as_str()) {
                    add(
                        "actedOnBehalfOf",
                        (delegate.clone(), agent.clone()),
                        json!({ "prov:delegate": delegate, "prov:responsible": agent, "tom:tx": tx }),
                    );
                }
            }
        }
    }

    if lineage.truncated {
        entities.insert(
            partial_qn(&lineage.root),
            json!({
                "prov:type": typed("tom:PartialLineage"),
                "tom:root": qn(&lineage.root),
                "tom:direction": lineage.direction,
                "tom:depth": lineage.depth,
                "tom:truncated": true,
                "tom:bookmark": lineage.bookmark,
            }),
        );
    }

    let mut doc = Map::new();
    doc.insert("prefix".into(), json!({ "tom": NAMESPACE }));
    for (name, map) in [
        ("entity", entities),
        ("activity", activities),
        ("agent", agents),
    ] {
        if !map.is_empty() {
            doc.insert(name.into(), Value::Object(map));
        }
    }
    for (kind, records) in relations {
        let mut map = Map::new();
        for (i, (_, value)) in records.into_iter().enumerate() {
            map.insert(format!("_:{kind}{}", i + 1), value);
        }
        doc.insert(kind.into(), Value::Object(map));
    }
    Value::Object(doc)
}
