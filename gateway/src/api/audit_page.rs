//! `/audit`: the read-only audit page served by `tom serve` (issue 12, section 3).
//!
//! Plain server-rendered HTML with one embedded stylesheet and no script: it reads the same
//! ledger queries as `/v1` (entity, history, records, lineage, evidence) as the signed-in
//! identity, renders the lineage as an SVG drawn here (a layered layout: rows by distance from
//! the subject), the incident report of [`crate::report`], and links to every transaction and
//! to the evidence bundle. Nothing is fetched from anywhere but the gateway, and every page
//! reads without JavaScript.
//!
//! Auth: the auditor signs in once with an API token (a form POSTed to `/audit/login`); the
//! gateway checks it and answers with a cookie `tom_audit` holding it, `HttpOnly` (no script can
//! read it), `SameSite=Strict` (no other site's page can make the browser send it) and
//! `Path=/audit` (the `/v1` API never sees it). A cookie rather than `Authorization` because
//! plain links, the back button and the bundle download must carry the credential without
//! JavaScript; the token never appears in a URL. `Authorization: Bearer` works too (scripts,
//! curl). Every page without a valid credential is a 401 carrying only the sign-in form.
//!
//! Everything rendered from the ledger (ids, free text, JSON) is escaped with [`esc`]; URLs
//! built from ids are percent-encoded first ([`enc`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tom_contract::requests::{self, Direction, LineageQuery};
use tom_contract::transaction::Transaction;

use super::error::AppError;
use super::extract::{ApiPath, ApiQuery};
use super::state::AppState;
use super::{Op, Route};
use crate::identities::Identity;

/// The cookie that carries the auditor's token.
pub const COOKIE: &str = "tom_audit";
/// Timeline rows per page.
pub const PAGE_ROWS: usize = 25;
/// At most this many record pages (of 1000) are read for one timeline.
const MAX_RECORD_PAGES: usize = 20;
const STYLE: &str = include_str!("../../assets/audit.css");
const SESSION_SECONDS: u32 = 8 * 3600;

/// HTML-escape `text` (for element content and quoted attributes).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode `text` for a URL path segment or query value.
pub fn enc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A scalar as text; anything else as compact JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(t) => t.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

/// A whole page around `main`.
fn page(title: &str, signed_in: Option<&Identity>, search: &str, main: &str) -> String {
    let who = match signed_in {
        Some(identity) => format!(
            "<form class=\"who\" method=\"post\" action=\"/audit/logout\"><span>signed in as {}</span> <button type=\"submit\">Sign out</button></form>",
            esc(&identity.name)
        ),
        None => String::new(),
    };
    let search_form = if signed_in.is_some() {
        format!(
            "<form class=\"search\" method=\"get\" action=\"/audit\" role=\"search\"><label for=\"q\">Entity id</label> <input id=\"q\" name=\"id\" value=\"{}\" maxlength=\"128\" placeholder=\"e.g. signal-ack-1\" required> <button type=\"submit\" id=\"go\">Search</button></form>",
            esc(search)
        )
    } else {
        String::new()
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} · TOM audit</title><link rel=\"stylesheet\" href=\"/audit/style.css\"></head><body><header><a class=\"home\" href=\"/audit\">TOM audit</a>{who}{search_form}</header><main>{main}</main><footer>Read-only view of the ledger. Every fact links to the transaction that recorded it; the evidence bundle proves them offline (<code>tom audit verify-evidence</code>).</footer></body></html>\n",
        esc(title)
    )
}

fn login_page(status: StatusCode, message: &str) -> Response {
    let note = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\" id=\"login-error\">{}</p>", esc(message))
    };
    let main = format!(
        "<h1>Sign in</h1>{note}<form method=\"post\" action=\"/audit/login\" class=\"login\"><label for=\"token\">API token</label> <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required maxlength=\"256\"> <button type=\"submit\" id=\"sign-in\">Sign in</button></form><p>Any identity's token can read the ledger; the page changes nothing. The token is kept in an HttpOnly cookie for this path only.</p>"
    );
    html_response(status, page("Sign in", None, "", &main))
}

fn error_page(who: &Identity, status: StatusCode, message: &str) -> Response {
    let main = format!(
        "<h1>{} {}</h1><p class=\"error\">{}</p>",
        status.as_u16(),
        esc(status.canonical_reason().unwrap_or("")),
        esc(message)
    );
    html_response(status, page("Error", Some(who), "", &main))
}

fn app_error_page(who: &Identity, e: AppError) -> Response {
    let message = e.to_string();
    let status = e.into_response().status();
    error_page(who, status, &message)
}

/// The signed-in auditor: the identity the `tom_audit` cookie (or a bearer token) selects.
/// Without one, the request is answered 401 with the sign-in form and nothing else.
pub struct Auditor(pub Arc<Identity>);

fn token_from(headers: &HeaderMap) -> Option<String> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

impl FromRequestParts<AppState> for Auditor {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match token_from(&parts.headers) {
            Some(token) if !token.is_empty() => state
                .identities
                .authenticate(&token)
                .map(Auditor)
                .ok_or_else(|| {
                    login_page(
                        StatusCode::UNAUTHORIZED,
                        "That token is not known here: sign in again.",
                    )
                }),
            _ => Err(login_page(StatusCode::UNAUTHORIZED, "")),
        }
    }
}

/// Evaluate query `T` as `who`, its answer as JSON.
async fn eval<T: Transaction>(
    s: &AppState,
    who: &Identity,
    request: &T,
) -> Result<Value, AppError> {
    let function = T::NAME;
    let argument = serde_json::to_vec(request)
        .map_err(|e| AppError::Internal(format!("cannot encode {function} request: {e}")))?;
    let bytes = s.ledger.evaluate(&who.signing, function, &argument).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| AppError::Internal(format!("{function} answered something not JSON: {e}")))
}

/// Every record about `id` (oldest first), up to [`MAX_RECORD_PAGES`] pages; `true` if cut.
async fn records_of(
    s: &AppState,
    who: &Identity,
    id: &str,
) -> Result<(Vec<Value>, bool), AppError> {
    let mut out = Vec::new();
    let mut bookmark = None;
    for _ in 0..MAX_RECORD_PAGES {
        let query = requests::RecordsQuery {
            entity: Some(id.to_owned()),
            page_size: Some(tom_contract::queries::MAX_PAGE),
            bookmark: bookmark.take(),
            ..requests::RecordsQuery::default()
        };
        let page = eval(s, who, &query).await?;
        if let Some(records) = page["records"].as_array() {
            out.extend(records.iter().cloned());
        }
        match page["bookmark"].as_str() {
            Some(next) if !next.is_empty() => bookmark = Some(next.to_owned()),
            _ => return Ok((out, false)),
        }
    }
    Ok((out, true))
}

// --- GET /audit ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    direction: Direction,
    #[serde(default)]
    depth: Option<u32>,
    #[serde(default)]
    page: Option<u32>,
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Up => "up",
        Direction::Down => "down",
        Direction::Both => "both",
    }
}

pub async fn audit_page(
    State(s): State<AppState>,
    auditor: Result<Auditor, Response>,
    query: Result<ApiQuery<PageParams>, AppError>,
) -> Response {
    let who = match auditor {
        Ok(Auditor(who)) => who,
        Err(login) => return login,
    };
    let q = match query {
        Ok(ApiQuery(q)) => q,
        Err(e) => return app_error_page(&who, e),
    };
    let Some(id) = q.id.filter(|i| !i.is_empty()) else {
        let main = "<h1>Audit</h1><p>Search an entity id (a device, container, data item or processing contract) to see its timeline, its lineage, the incident report and its evidence bundle.</p>";
        return html_response(StatusCode::OK, page("Audit", Some(&who), "", main));
    };
    match entity_page(&s, &who, &id, q.direction, q.depth, q.page.unwrap_or(1)).await {
        Ok(main) => html_response(StatusCode::OK, page(&id, Some(&who), &id, &main)),
        Err(e) => app_error_page(&who, e),
    }
}

async fn entity_page(
    s: &AppState,
    who: &Identity,
    id: &str,
    direction: Direction,
    depth: Option<u32>,
    page_no: u32,
) -> Result<String, AppError> {
    let by_id = requests::ById { id: id.to_owned() };
    let entity = eval(s, who, &requests::GetEntity(by_id.clone())).await?;
    let history = eval(s, who, &requests::GetHistory(by_id)).await?;
    let (records, cut) = records_of(s, who, id).await?;
    let lineage_query = LineageQuery {
        id: id.to_owned(),
        direction,
        depth,
        ..LineageQuery::default()
    };
    let lineage = eval(s, who, &requests::GetLineage(lineage_query)).await?;
    let dir = direction_name(direction);
    let depth_q = depth.map(|d| format!("&depth={d}")).unwrap_or_default();
    let eid = enc(id);

    let mut main = String::new();
    let _ = write!(
        main,
        "<h1 id=\"subject\">{}</h1><p class=\"kind\">{}</p>",
        esc(id),
        esc(&describe(&entity))
    );
    let _ = write!(
        main,
        "<nav class=\"sections\"><a href=\"#timeline\">Timeline</a> <a href=\"#lineage\">Lineage</a> <a href=\"#report\">Report</a> <a class=\"button\" id=\"download\" href=\"/audit/evidence/{eid}?direction={dir}{}\" download>Download evidence bundle</a></nav>",
        esc(&depth_q)
    );
    main.push_str("<section><h2>Entity</h2>");
    main.push_str(&fields(&entity));
    main.push_str("</section>");

    // Timeline: every version and every record, one row per transaction, newest first.
    main.push_str(&timeline(
        id, &history, &records, cut, page_no, dir, &depth_q,
    ));

    // Lineage.
    let _ = write!(
        main,
        "<section id=\"lineage\"><h2>Lineage</h2><form method=\"get\" action=\"/audit\" class=\"inline\"><input type=\"hidden\" name=\"id\" value=\"{}\"><label for=\"direction\">direction</label> <select id=\"direction\" name=\"direction\">",
        esc(id)
    );
    for d in ["up", "down", "both"] {
        let selected = if d == dir { " selected" } else { "" };
        let _ = write!(main, "<option value=\"{d}\"{selected}>{d}</option>");
    }
    let _ = write!(
        main,
        "</select> <label for=\"depth\">depth</label> <input id=\"depth\" name=\"depth\" type=\"number\" min=\"0\" max=\"{}\" value=\"{}\"> <button type=\"submit\">Show</button></form>",
        tom_contract::queries::MAX_DEPTH,
        depth.unwrap_or(8)
    );
    main.push_str(&lineage_svg(&lineage));
    main.push_str(&truncated_note(&lineage, id, dir, &depth_q));
    main.push_str(&relations_list(&lineage));
    main.push_str("</section>");

    // The incident report (section 2), from the evidence bundle verified here.
    main.push_str("<section id=\"report\"><h2>Incident report</h2>");
    let report = incident_report(s, who, id, &entity, depth).await;
    let _ = write!(
        main,
        "<pre class=\"report\">{}</pre></section>",
        esc(&report)
    );
    Ok(main)
}

/// What the entity is, in a few words.
fn describe(entity: &Value) -> String {
    [
        &entity["type"],
        &entity["kind"],
        &entity["org"],
        &entity["state"],
        &entity["effective_state"],
    ]
    .iter()
    .map(|v| text(v))
    .filter(|v| !v.is_empty())
    .collect::<Vec<_>>()
    .join(" · ")
}

/// An object's fields as a definition list.
fn fields(value: &Value) -> String {
    let mut out = String::from("<dl class=\"fields\">");
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&text(v)));
        }
    } else {
        let _ = write!(out, "<dd>{}</dd>", esc(&text(value)));
    }
    out.push_str("</dl>");
    out
}

fn timeline(
    id: &str,
    history: &Value,
    records: &[Value],
    cut: bool,
    page_no: u32,
    dir: &str,
    depth_q: &str,
) -> String {
    struct Row {
        time: String,
        tx: String,
        kind: String,
        agent: String,
        version: Option<String>,
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for r in records {
        let tx = str_of(&r["tx_id"]).to_owned();
        rows.insert(
            tx.clone(),
            Row {
                time: text(&r["timestamp"]),
                tx,
                kind: str_of(&r["kind"]).to_owned(),
                agent: str_of(&r["agent"]["id"]).to_owned(),
                version: None,
            },
        );
    }
    for h in history.as_array().into_iter().flatten() {
        let tx = str_of(&h["tx_id"]).to_owned();
        let version = if h["is_delete"].as_bool() == Some(true) {
            "deleted".to_owned()
        } else {
            let v = &h["value"];
            [&v["state"], &v["effective_state"], &v["placement_status"]]
                .iter()
                .map(|x| text(x))
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let row = rows.entry(tx.clone()).or_insert_with(|| Row {
            time: text(&h["timestamp"]),
            tx,
            kind: String::new(),
            agent: String::new(),
            version: None,
        });
        row.version = Some(if version.is_empty() {
            "new version".into()
        } else {
            version
        });
    }
    let mut rows: Vec<Row> = rows.into_values().collect();
    rows.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.tx.cmp(&a.tx)));
    let pages = rows.len().div_ceil(PAGE_ROWS).max(1);
    let page_no = (page_no as usize).clamp(1, pages);
    let mut out = format!(
        "<section id=\"timeline\"><h2>Timeline</h2><p>{} transactions, newest first; page {page_no} of {pages}.{}</p><table><thead><tr><th>time</th><th>record</th><th>by</th><th>version</th><th>transaction</th></tr></thead><tbody>",
        rows.len(),
        if cut { " Only the oldest records are shown: the entity has more than this page reads." } else { "" }
    );
    for row in rows.iter().skip((page_no - 1) * PAGE_ROWS).take(PAGE_ROWS) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a class=\"tx\" href=\"/audit/tx/{}\"><code>{}</code></a></td></tr>",
            esc(&row.time),
            esc(&row.kind),
            esc(&row.agent),
            esc(row.version.as_deref().unwrap_or("")),
            enc(&row.tx),
            esc(row.tx.get(..16).unwrap_or(&row.tx))
        );
    }
    out.push_str("</tbody></table>");
    if pages > 1 {
        out.push_str("<nav class=\"pages\">");
        let link = |n: usize| {
            format!(
                "/audit?id={}&direction={dir}{depth_q}&page={n}#timeline",
                enc(id)
            )
        };
        if page_no > 1 {
            let _ = write!(
                out,
                "<a rel=\"prev\" href=\"{}\">newer</a> ",
                esc(&link(page_no - 1))
            );
        }
        if page_no < pages {
            let _ = write!(
                out,
                "<a rel=\"next\" href=\"{}\">older</a>",
                esc(&link(page_no + 1))
            );
        }
        out.push_str("</nav>");
    }
    out.push_str("</section>");
    out
}

/// For a lineage cut short by its bounds: that it is partial, and how to continue it (the
/// CLI command and the next part as JSON). Empty for a complete lineage.
fn truncated_note(lineage: &Value, id: &str, dir: &str, depth_q: &str) -> String {
    let bookmark = str_of(&lineage["bookmark"]);
    if lineage["truncated"] != Value::Bool(true) || bookmark.is_empty() {
        return String::new();
    }
    let shown = lineage["nodes"].as_object().map_or(0, |n| n.len());
    let depth_arg = depth_q
        .strip_prefix("&depth=")
        .map(|d| format!(" --depth {d}"))
        .unwrap_or_default();
    format!(
        "<p class=\"truncated\" id=\"lineage-truncated\"><strong>Truncated:</strong> the lineage is larger than one answer; {shown} nodes are shown. Continue with <code>tom audit lineage {} --direction {dir}{} --bookmark {}</code> or <a href=\"/v1/lineage/{}?direction={dir}{}&amp;bookmark={}\">the next part (JSON)</a>.</p>",
        esc(id),
        esc(&depth_arg),
        esc(bookmark),
        enc(id),
        esc(depth_q),
        enc(bookmark)
    )
}

/// `(label, kind, link)` of a lineage node.
fn node_info(id: &str, node: &Value) -> (String, String, Option<String>) {
    match str_of(&node["node"]) {
        "entity" => {
            let e = &node["entity"];
            let kind = [str_of(&e["type"]), str_of(&e["kind"])]
                .iter()
                .filter(|x| !x.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" · ");
            (id.to_owned(), kind, Some(format!("/audit?id={}", enc(id))))
        }
        "contract" => (
            id.to_owned(),
            "contract".into(),
            Some(format!("/audit?id={}", enc(id))),
        ),
        _ => (id.to_owned(), "agent".into(), None),
    }
}

fn clip(t: &str, max: usize) -> String {
    if t.chars().count() <= max {
        t.to_owned()
    } else {
        let mut c: String = t.chars().take(max - 1).collect();
        c.push('…');
        c
    }
}

/// The lineage as SVG: nodes in rows by their distance from the subject (edges taken either
/// way), each entity node a link to its own audit page, each edge label a link to the
/// transaction that recorded it.
pub fn lineage_svg(lineage: &Value) -> String {
    const W: usize = 190;
    const H: usize = 44;
    const GAP_X: usize = 24;
    const GAP_Y: usize = 70;
    let root = str_of(&lineage["root"]).to_owned();
    let empty = serde_json::Map::new();
    let nodes = lineage["nodes"].as_object().unwrap_or(&empty);
    let relations: Vec<&Value> = lineage["relations"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let mut adjacent: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    // Agents (the orchestrator, recorders) touch nearly everything: they go in the last row,
    // so the rows follow derivation, generation and placement.
    let is_agent = |id: &str| str_of(&nodes.get(id).unwrap_or(&Value::Null)["node"]) == "agent";
    for r in &relations {
        let (a, b) = (str_of(&r["from"]), str_of(&r["to"]));
        if is_agent(a) || is_agent(b) {
            continue;
        }
        adjacent.entry(a).or_default().insert(b);
        adjacent.entry(b).or_default().insert(a);
    }
    // Breadth-first layers from the root; nodes not reached go in a last row.
    let mut layer: BTreeMap<&str, usize> = BTreeMap::new();
    let mut queue = VecDeque::new();
    if nodes.contains_key(&root) {
        layer.insert(root.as_str(), 0);
        queue.push_back(root.as_str());
    }
    while let Some(n) = queue.pop_front() {
        let next = layer[n] + 1;
        for m in adjacent.get(n).into_iter().flatten() {
            if !layer.contains_key(m) {
                layer.insert(m, next);
                queue.push_back(m);
            }
        }
    }
    let last = layer.values().max().map_or(0, |m| m + 1);
    let mut rows: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for id in nodes.keys() {
        rows.entry(*layer.get(id.as_str()).unwrap_or(&last))
            .or_default()
            .push(id.as_str());
    }
    let widest = rows.values().map(Vec::len).max().unwrap_or(1).max(1);
    let width = widest * (W + GAP_X) + GAP_X;
    let height = rows.len().max(1) * (H + GAP_Y) + GAP_Y / 2;
    let mut at: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (row_index, (_, ids)) in rows.iter().enumerate() {
        let row_width = ids.len() * (W + GAP_X) - GAP_X;
        let x0 = (width - row_width) / 2;
        for (i, id) in ids.iter().enumerate() {
            at.insert(
                id,
                (x0 + i * (W + GAP_X), GAP_Y / 2 + row_index * (H + GAP_Y)),
            );
        }
    }
    let mut out = format!(
        "<div class=\"graph\"><svg xmlns=\"http://www.w3.org/2000/svg\" id=\"lineage-graph\" role=\"img\" aria-label=\"lineage of {}\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\"><defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" class=\"arrowhead\"/></marker></defs>",
        esc(&root)
    );
    let mut drawn = BTreeSet::new();
    for r in &relations {
        // One arrow per pair and relation (the list below names every transaction).
        if !drawn.insert((str_of(&r["from"]), str_of(&r["to"]), str_of(&r["relation"]))) {
            continue;
        }
        let (Some(&(x1, y1)), Some(&(x2, y2))) =
            (at.get(str_of(&r["from"])), at.get(str_of(&r["to"])))
        else {
            continue;
        };
        let (cx1, cy1, cx2, cy2) = (x1 + W / 2, y1 + H / 2, x2 + W / 2, y2 + H / 2);
        // Leave the boxes from their top or bottom edge (or side, within a row).
        let (sy, ey) = match cy1.cmp(&cy2) {
            std::cmp::Ordering::Less => (cy1 + H / 2, cy2 - H / 2),
            std::cmp::Ordering::Greater => (cy1 - H / 2, cy2 + H / 2),
            std::cmp::Ordering::Equal => (cy1, cy2),
        };
        let tx = str_of(&r["tx_id"]);
        let label = str_of(&r["relation"]);
        let _ = write!(
            out,
            "<line class=\"edge\" x1=\"{cx1}\" y1=\"{sy}\" x2=\"{cx2}\" y2=\"{ey}\" marker-end=\"url(#arrow)\"/>"
        );
        let (mx, my) = ((cx1 + cx2) / 2, (sy + ey) / 2);
        let text_el = format!(
            "<text class=\"edge-label\" x=\"{mx}\" y=\"{my}\" text-anchor=\"middle\">{}</text>",
            esc(label)
        );
        if tx.is_empty() {
            out.push_str(&text_el);
        } else {
            let _ = write!(
                out,
                "<a href=\"/audit/tx/{}\"><title>{} (transaction {})</title>{text_el}</a>",
                enc(tx),
                esc(label),
                esc(tx)
            );
        }
    }
    for (id, node) in nodes {
        let Some(&(x, y)) = at.get(id.as_str()) else {
            continue;
        };
        let (label, kind, link) = node_info(id, node);
        let class = if *id == root { "node root" } else { "node" };
        let body = format!(
            "<title>{}</title><rect class=\"{class} {}\" x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"6\"/><text class=\"node-id\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text><text class=\"node-kind\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            esc(id),
            esc(str_of(&node["node"])),
            x + W / 2,
            y + 19,
            esc(&clip(&label, 26)),
            x + W / 2,
            y + 35,
            esc(&clip(&kind, 30))
        );
        match link {
            Some(href) => {
                let _ = write!(
                    out,
                    "<a class=\"node-link\" href=\"{}\">{body}</a>",
                    esc(&href)
                );
            }
            None => out.push_str(&body),
        }
    }
    out.push_str("</svg></div>");
    out
}

/// The same relations as a list: what a screen reader (or a text browser) gets.
fn relations_list(lineage: &Value) -> String {
    let mut out =
        String::from("<details open><summary>Relations</summary><ul class=\"relations\">");
    for r in lineage["relations"].as_array().into_iter().flatten() {
        let node_link = |id: &str| {
            let node = &lineage["nodes"][id];
            match node_info(id, node).2 {
                Some(href) => format!("<a href=\"{}\">{}</a>", esc(&href), esc(id)),
                None => esc(id),
            }
        };
        let tx = str_of(&r["tx_id"]);
        let _ = write!(
            out,
            "<li>{} <em>{}</em> {} <a class=\"tx\" href=\"/audit/tx/{}\"><code>{}</code></a></li>",
            node_link(str_of(&r["from"])),
            esc(str_of(&r["relation"])),
            node_link(str_of(&r["to"])),
            enc(tx),
            esc(tx.get(..12).unwrap_or(tx))
        );
    }
    out.push_str("</ul></details>");
    out
}

/// The report of section 2 as text, from the evidence bundle verified here; where the ledger
/// gives no bundle, from the lineage alone (and the report says so).
async fn incident_report(
    s: &AppState,
    who: &Identity,
    id: &str,
    entity: &Value,
    depth: Option<u32>,
) -> String {
    use crate::report::{self, Facts};
    let mut facts = Facts {
        subject: id.to_owned(),
        entity: entity.clone(),
        ..Facts::default()
    };
    let query = LineageQuery {
        id: id.to_owned(),
        direction: Direction::Up,
        depth,
        limit: Some(tom_contract::queries::MAX_LINEAGE_NODES as u32),
        fan_out: Some(tom_contract::queries::MAX_FAN_OUT),
        bookmark: None,
    };
    match s.ledger.evidence(&who.signing, &query).await {
        Ok(bundle) => {
            for record in &bundle.records {
                if let Some(tx) = record.get("tx_id").and_then(Value::as_str) {
                    facts.records.insert(tx.to_owned(), record.clone());
                }
            }
            facts.verdict = crate::evidence::verify::verify_bundle(
                &bundle,
                &crate::evidence::Options::default(),
            )
            .map(|v| v.to_string())
            .map_err(|f| f.to_string());
            facts.lineage = bundle.lineage;
        }
        Err(e) => {
            facts.verdict = Err(format!("no evidence bundle: {e}"));
            facts.lineage = eval(s, who, &requests::GetLineage(query.clone()))
                .await
                .unwrap_or(Value::Null);
            for record in facts
                .lineage
                .get("relations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let tx = s_owned(&record["tx_id"]);
                if tx.is_empty() || facts.records.contains_key(&tx) {
                    continue;
                }
                if let Ok(r) = eval(
                    s,
                    who,
                    &requests::GetRecord(requests::ById { id: tx.clone() }),
                )
                .await
                {
                    facts.records.insert(tx, r);
                }
            }
        }
    }
    for actor in report::actors(&facts.lineage) {
        if let Ok((records, _)) = records_of(s, who, &actor).await {
            facts
                .trouble
                .extend(records.into_iter().filter(report::is_trouble));
        }
    }
    report::render_text(&facts)
}

fn s_owned(v: &Value) -> String {
    str_of(v).to_owned()
}

// --- GET /audit/tx/{id} -------------------------------------------------------------------------

pub async fn audit_tx(
    State(s): State<AppState>,
    auditor: Result<Auditor, Response>,
    path: Result<ApiPath<String>, AppError>,
) -> Response {
    let who = match auditor {
        Ok(Auditor(who)) => who,
        Err(login) => return login,
    };
    let tx = match path {
        Ok(ApiPath(tx)) => tx,
        Err(e) => return app_error_page(&who, e),
    };
    let record = match eval(
        &s,
        &who,
        &requests::GetRecord(requests::ById { id: tx.clone() }),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return app_error_page(&who, e),
    };
    let mut main = format!(
        "<h1>Transaction</h1><p><code id=\"tx-id\">{}</code></p><dl class=\"fields\"><dt>record</dt><dd id=\"record-kind\">{}</dd><dt>time</dt><dd>{}</dd><dt>by</dt><dd>{}</dd><dt>certificate</dt><dd><code>{}</code></dd><dt>about</dt><dd><ul class=\"subjects\">",
        esc(&tx),
        esc(str_of(&record["kind"])),
        esc(&text(&record["timestamp"])),
        esc(str_of(&record["agent"]["id"])),
        esc(&text(&record["agent"]["cert_hash"]))
    );
    for subject in record["subjects"].as_array().into_iter().flatten() {
        let id = str_of(subject);
        let _ = write!(
            main,
            "<li><a class=\"subject\" href=\"/audit?id={}\">{}</a></li>",
            enc(id),
            esc(id)
        );
    }
    main.push_str("</ul></dd></dl><h2>What the transaction recorded</h2>");
    main.push_str(&fields(&record["body"]));
    let pretty = serde_json::to_string_pretty(&record).unwrap_or_default();
    let _ = write!(
        main,
        "<details><summary>The record as the ledger holds it (JSON)</summary><pre>{}</pre></details>",
        esc(&pretty)
    );
    html_response(StatusCode::OK, page(&tx, Some(&who), "", &main))
}

// --- GET /audit/evidence/{id} -------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceParams {
    #[serde(default)]
    direction: Direction,
    #[serde(default)]
    depth: Option<u32>,
}

/// The evidence bundle as a download, for the signed-in auditor (`GET /v1/evidence/{id}`
/// needs the `Authorization` header a plain link cannot send).
pub async fn audit_evidence(
    State(s): State<AppState>,
    auditor: Result<Auditor, Response>,
    path: Result<ApiPath<String>, AppError>,
    query: Result<ApiQuery<EvidenceParams>, AppError>,
) -> Response {
    let who = match auditor {
        Ok(Auditor(who)) => who,
        Err(login) => return login,
    };
    let (id, q) = match (path, query) {
        (Ok(ApiPath(id)), Ok(ApiQuery(q))) => (id, q),
        (Err(e), _) | (_, Err(e)) => return app_error_page(&who, e),
    };
    let query = LineageQuery {
        id,
        direction: q.direction,
        depth: q.depth,
        limit: Some(tom_contract::queries::MAX_LINEAGE_NODES as u32),
        fan_out: Some(tom_contract::queries::MAX_FAN_OUT),
        bookmark: None,
    };
    let bundle = match s.ledger.evidence(&who.signing, &query).await {
        Ok(b) => b,
        Err(e) => return app_error_page(&who, e.into()),
    };
    let bytes = match serde_json::to_vec(&bundle) {
        Ok(b) => b,
        Err(e) => {
            return error_page(
                &who,
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot encode the evidence bundle: {e}"),
            )
        }
    };
    let name: String = query
        .id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.evidence.json\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from(bytes),
    )
        .into_response()
}

// --- sign in and out, the stylesheet ------------------------------------------------------------

fn form_value(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    let raw = body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)?
        .1;
    let raw = raw.replace('+', " ");
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `POST /audit/login` (form field `token`): on a known token, a 303 to `/audit` setting the
/// session cookie; otherwise 401 and the form again.
pub async fn audit_login(State(s): State<AppState>, body: Bytes) -> Response {
    let token = form_value(&body, "token").unwrap_or_default();
    let token = token.trim();
    let valid = !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b';' && b != b',' && b != b'"');
    if !valid || s.identities.authenticate(token).is_none() {
        return login_page(StatusCode::UNAUTHORIZED, "Unknown token.");
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/audit".to_owned()),
            (
                header::SET_COOKIE,
                format!(
                    "{COOKIE}={token}; Path=/audit; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}"
                ),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response()
}

/// `POST /audit/logout`: clears the cookie.
pub async fn audit_logout() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/audit"),
            (
                header::SET_COOKIE,
                "tom_audit=; Path=/audit; HttpOnly; SameSite=Strict; Max-Age=0",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
    )
        .into_response()
}

pub async fn audit_style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

// --- the OpenAPI document -------------------------------------------------------------------------

/// A refusal the page answers as HTML when it renders the error itself, or as the JSON error
/// when the request is turned away before (a parameter outside its rule).
fn error_json_or_html(description: &str) -> Value {
    json!({ "description": description, "content": {
        "application/json": { "schema": { "$ref": "#/components/schemas/Error" } },
        "text/html": { "schema": { "type": "string" } },
    } })
}

fn html(description: &str) -> Value {
    json!({ "description": description, "content": { "text/html": { "schema": { "type": "string" } } } })
}

/// The responses (and request body) of the audit page's routes, replacing the JSON defaults.
pub fn document(route: &Route, operation: &mut Value) {
    let responses = match route.op {
        Op::AuditPage | Op::AuditTx => json!({
            "200": html("the page"),
            "400": error_json_or_html("a parameter outside its rule, or an unknown one (named in the message)"),
            "401": html("no or an unknown token (cookie `tom_audit` or `Authorization: Bearer`): the sign-in form"),
            "403": html("the ledger refused the signed-in identity"),
            "404": html("no such entity or transaction"),
            "500": html("the ledger's answer could not be read"),
            "503": html("the ledger is unavailable"),
        }),
        Op::AuditEvidence => json!({
            "200": { "description": "an evidence bundle (tom-evidence v1) as an attachment", "content": { "application/json": {} } },
            "400": error_json_or_html("a parameter outside its rule, or an unknown one (named in the message)"),
            "401": html("no or an unknown token: the sign-in form"),
            "403": html("the ledger refused the signed-in identity"),
            "404": html("no such entity"),
            "500": html("the bundle could not be built"),
            "503": html("the ledger is unavailable"),
        }),
        Op::AuditLogin => {
            operation["requestBody"] = json!({ "required": true, "content": { "application/x-www-form-urlencoded": { "schema": { "type": "object", "properties": { "token": { "type": "string", "maxLength": 256 } }, "required": ["token"] } } } });
            json!({
                "303": { "description": "signed in: to /audit, with the HttpOnly SameSite=Strict cookie `tom_audit`", "headers": { "Set-Cookie": { "schema": { "type": "string" } }, "Location": { "schema": { "type": "string" } } } },
                "401": html("unknown token: the sign-in form again"),
                "413": { "description": "body too large" },
            })
        }
        Op::AuditLogout => json!({
            "303": { "description": "signed out: to /audit, the cookie cleared", "headers": { "Set-Cookie": { "schema": { "type": "string" } }, "Location": { "schema": { "type": "string" } } } },
        }),
        Op::AuditStyle => json!({
            "200": { "description": "the page's stylesheet", "content": { "text/css": { "schema": { "type": "string" } } } },
        }),
        _ => return,
    };
    operation["responses"] = responses;
}
