//! The `tom audit` subcommands that do more than print one response: `evidence` (download a
//! bundle to a file) and `verify-evidence` (check one offline); and how every answer is
//! printed: for a person at a terminal as aligned, wrapped text ([`report::render_fields`],
//! [`report::render_records`]), for scripts (stdout not a terminal, `--json`, `--format json`)
//! as the gateway's JSON, exactly as before text existed.

use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context};

use crate::cli::{audit_path, encode, AuditQuery, Client, GatewayArgs, OutputArgs};
use tom_gateway::evidence;
use tom_gateway::report;

/// Run `query` if it is one of these subcommands; `None` for the plain queries.
pub async fn run(
    gateway: &GatewayArgs,
    output: &OutputArgs,
    query: &AuditQuery,
) -> Option<anyhow::Result<()>> {
    match query {
        AuditQuery::Evidence { out, .. } => Some(download(gateway, &audit_path(query), out).await),
        // These two print text unless JSON is asked for, also into a pipe, as they always did.
        AuditQuery::VerifyEvidence {
            file,
            trust,
            node_key,
            json,
        } => Some(verify(
            file,
            trust,
            node_key.as_deref(),
            *json || output.format == Some(crate::cli::OutputFormat::Json),
        )),
        AuditQuery::Report { id, depth, json } => Some(
            report(
                gateway,
                id,
                *depth,
                *json || output.format == Some(crate::cli::OutputFormat::Json),
            )
            .await,
        ),
        AuditQuery::Records { all: true, .. } => {
            Some(all_records(gateway, output, query, &audit_path(query)).await)
        }
        _ => None,
    }
}

/// Print the answer to a plain query: JSON (pretty, as always) or text for a person.
pub fn print(
    query: &AuditQuery,
    output: &OutputArgs,
    value: &serde_json::Value,
) -> anyhow::Result<()> {
    let json_flag = match query {
        AuditQuery::Entity { json, .. }
        | AuditQuery::History { json, .. }
        | AuditQuery::Lineage { json, .. }
        | AuditQuery::Prov { json, .. }
        | AuditQuery::Records { json, .. } => *json,
        _ => true,
    };
    let text = if output.json(json_flag) {
        format!("{}\n", serde_json::to_string_pretty(value)?)
    } else {
        match query {
            AuditQuery::Records { .. } => report::render_records(value),
            AuditQuery::History { .. } => report::render_history(value),
            _ => report::render_fields(value),
        }
    };
    let _ = write!(std::io::stdout(), "{text}");
    if let Some(note) = continuation(query, value) {
        // On stderr, so the JSON on stdout stays one document.
        let _ = writeln!(std::io::stderr(), "{note}");
    }
    Ok(())
}

/// For a lineage (or its PROV document) cut short by its bounds: that it is partial and the
/// command that continues it. `None` for a complete answer or any other query.
pub fn continuation(query: &AuditQuery, value: &serde_json::Value) -> Option<String> {
    let (name, id, bookmark) = match query {
        AuditQuery::Lineage { id, .. } => (
            "lineage",
            id,
            value
                .get("truncated")
                .and_then(serde_json::Value::as_bool)
                .filter(|t| *t)
                .and(value.get("bookmark")),
        ),
        AuditQuery::Prov { id, .. } => {
            let marker = tom_contract::prov::partial_qn(id);
            (
                "prov",
                id,
                value
                    .get("entity")
                    .and_then(|e| e.get(&marker))
                    .and_then(|m| m.get("tom:bookmark")),
            )
        }
        _ => return None,
    };
    let bookmark = bookmark.and_then(serde_json::Value::as_str)?;
    let (direction, depth, bounds) = match query {
        AuditQuery::Lineage {
            direction,
            depth,
            bounds,
            ..
        }
        | AuditQuery::Prov {
            direction,
            depth,
            bounds,
            ..
        } => (*direction, *depth, bounds),
        _ => return None,
    };
    let mut command = format!(
        "tom audit {name} {id} --direction {}",
        crate::cli::direction(direction)
    );
    if let Some(depth) = depth {
        command.push_str(&format!(" --depth {depth}"));
    }
    if let Some(limit) = bounds.limit {
        command.push_str(&format!(" --limit {limit}"));
    }
    if let Some(fan_out) = bounds.fan_out {
        command.push_str(&format!(" --fan-out {fan_out}"));
    }
    Some(format!(
        "truncated: this is part of the lineage; continue with --bookmark {bookmark}\n  {command} --bookmark {bookmark}"
    ))
}

fn token(gateway: &GatewayArgs) -> anyhow::Result<&str> {
    match &gateway.token {
        Some(token) => Ok(token),
        None => bail!("tom audit needs an API token: --token T (or TOM_TOKEN)"),
    }
}

async fn download(gateway: &GatewayArgs, path: &str, out: &Path) -> anyhow::Result<()> {
    let bytes = get_bytes(gateway, path).await?;
    // Write beside the target and rename, so a failed download never leaves half a bundle.
    let partial = out.with_extension("partial");
    std::fs::write(&partial, &bytes).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, out).with_context(|| format!("writing {}", out.display()))?;
    let _ = writeln!(
        std::io::stdout(),
        "evidence bundle written to {} ({} bytes); check it with: tom audit verify-evidence {}",
        out.display(),
        bytes.len(),
        out.display()
    );
    Ok(())
}

fn verify(
    file: &Path,
    trust: &[std::path::PathBuf],
    node_key: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let mut options = evidence::Options::default();
    for path in trust {
        options.trust.push(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading --trust {}", path.display()))?,
        );
    }
    if let Some(path) = node_key {
        options.node_key_pem = Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading --node-key {}", path.display()))?,
        );
    }
    let started = std::time::Instant::now();
    let result = evidence::verify(&bytes, &options);
    let elapsed = started.elapsed();
    match result {
        Ok(verified) => {
            if json {
                let value = serde_json::json!({
                    "verified": true,
                    "subject": verified.subject,
                    "ledger": verified.ledger,
                    "records": verified.records,
                    "transactions": verified.transactions,
                    "first_block": verified.first_block,
                    "tip_block": verified.tip_block,
                    "tip_hash": verified.tip_hash,
                    "tip_signer": verified.tip_signer,
                    "agents": verified.agents,
                    "anchored": verified.anchored,
                    "claims": verified.claims,
                    "endorsements": verified.endorsements,
                    "millis": elapsed.as_millis() as u64,
                });
                let _ = writeln!(
                    std::io::stdout(),
                    "{}",
                    serde_json::to_string_pretty(&value)?
                );
            } else {
                let _ = writeln!(std::io::stdout(), "{verified}");
                let _ = writeln!(
                    std::io::stdout(),
                    "  ({} bytes checked in {} ms)",
                    bytes.len(),
                    elapsed.as_millis()
                );
            }
            Ok(())
        }
        Err(failure) => {
            if json {
                let value = serde_json::json!({
                    "verified": false,
                    "check": failure.check,
                    "detail": failure.detail,
                });
                let _ = writeln!(
                    std::io::stdout(),
                    "{}",
                    serde_json::to_string_pretty(&value)?
                );
            }
            bail!("{}: {failure}", file.display())
        }
    }
}

/// GET `path` as raw bytes, with the gateway's error message on failure.
async fn get_bytes(gateway: &GatewayArgs, path: &str) -> anyhow::Result<Vec<u8>> {
    let url = format!("{}{path}", gateway.gateway.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token(gateway)?)
        .send()
        .await
        .with_context(|| format!("GET {url}: gateway unreachable"))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("GET {url}: reading the response"))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        bail!("GET {path}: {status}: {message}");
    }
    Ok(bytes.to_vec())
}

/// Every page of a records query, following the bookmarks.
async fn pages(client: &Client, path: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut records = Vec::new();
    let mut bookmark = String::new();
    loop {
        let page = if bookmark.is_empty() {
            client.get(path).await?
        } else {
            client
                .get(&format!("{path}{separator}bookmark={}", encode(&bookmark)))
                .await?
        };
        if let Some(items) = page.get("records").and_then(|r| r.as_array()) {
            records.extend(items.iter().cloned());
        }
        match page.get("bookmark").and_then(|b| b.as_str()) {
            Some(next) if !next.is_empty() && next != bookmark => bookmark = next.to_owned(),
            _ => return Ok(records),
        }
    }
}

async fn all_records(
    gateway: &GatewayArgs,
    output: &OutputArgs,
    query: &AuditQuery,
    path: &str,
) -> anyhow::Result<()> {
    let client = Client::new(&gateway.gateway, token(gateway)?);
    let records = pages(&client, path).await?;
    print(
        query,
        output,
        &serde_json::json!({ "records": records, "bookmark": "" }),
    )
}

async fn report(
    gateway: &GatewayArgs,
    id: &str,
    depth: Option<u32>,
    json: bool,
) -> anyhow::Result<()> {
    use tom_gateway::report::Facts;
    let client = Client::new(&gateway.gateway, token(gateway)?);
    let entity = client.get(&format!("/v1/entities/{}", encode(id))).await?;
    let depth = depth.map(|d| format!("&depth={d}")).unwrap_or_default();
    let mut facts = Facts {
        subject: id.to_owned(),
        entity,
        ..Facts::default()
    };
    // The evidence bundle carries the lineage and its records; verify it here, as an auditor's
    // copy would be.
    match get_bytes(
        gateway,
        &format!("/v1/evidence/{}?direction=up{depth}", encode(id)),
    )
    .await
    {
        Ok(bytes) => {
            let bundle: evidence::Bundle =
                serde_json::from_slice(&bytes).context("the gateway's evidence bundle")?;
            facts.lineage = bundle.lineage.clone();
            for record in &bundle.records {
                if let Some(tx) = record.get("tx_id").and_then(|t| t.as_str()) {
                    facts.records.insert(tx.to_owned(), record.clone());
                }
            }
            facts.verdict = evidence::verify(&bytes, &evidence::Options::default())
                .map(|v| v.to_string())
                .map_err(|f| f.to_string());
        }
        Err(e) => {
            facts.lineage = client
                .get(&format!("/v1/lineage/{}?direction=up{depth}", encode(id)))
                .await?;
            let mut named = std::collections::BTreeSet::new();
            collect_tx_ids(&facts.lineage, &mut named);
            for tx in named {
                if let Ok(record) = client
                    .get(&format!("/v1/transactions/{}", encode(&tx)))
                    .await
                {
                    facts.records.insert(tx, record);
                }
            }
            facts.verdict = Err(format!("no evidence bundle: {e}"));
        }
    }
    for actor in report::actors(&facts.lineage) {
        let records = pages(&client, &format!("/v1/records?entity={}", encode(&actor))).await?;
        facts
            .trouble
            .extend(records.into_iter().filter(report::is_trouble));
    }
    let mut out = std::io::stdout();
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report::render_json(&facts))?
        );
    } else {
        let _ = write!(out, "{}", report::render_text(&facts));
    }
    Ok(())
}

fn collect_tx_ids(value: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("tx_id", serde_json::Value::String(s)) if !s.is_empty() => {
                        out.insert(s.clone());
                    }
                    _ => collect_tx_ids(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_tx_ids(v, out)),
        _ => {}
    }
}
