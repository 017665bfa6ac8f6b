//! The `tom audit` subcommands that do more than print one response: `evidence` (download a
//! bundle to a file) and `verify-evidence` (check one offline).

use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context};

use crate::cli::{audit_path, AuditQuery, GatewayArgs};
use tom_gateway::evidence;

/// Run `query` if it is one of these subcommands; `None` for the plain queries.
pub async fn run(gateway: &GatewayArgs, query: &AuditQuery) -> Option<anyhow::Result<()>> {
    match query {
        AuditQuery::Evidence { out, .. } => Some(download(gateway, &audit_path(query), out).await),
        AuditQuery::VerifyEvidence {
            file,
            trust,
            node_key,
            json,
        } => Some(verify(file, trust, node_key.as_deref(), *json)),
        _ => None,
    }
}

fn token(gateway: &GatewayArgs) -> anyhow::Result<&str> {
    match &gateway.token {
        Some(token) => Ok(token),
        None => bail!("tom audit needs an API token: --token T (or TOM_TOKEN)"),
    }
}

async fn download(gateway: &GatewayArgs, path: &str, out: &Path) -> anyhow::Result<()> {
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
