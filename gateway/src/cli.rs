//! The `tom` command line: `serve`, `verify`, `identity`, `audit` and `demo`, and the small HTTP
//! client that `audit` and `demo` use to call a gateway.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

use crate::config::{DEFAULT_DATA_DIR, DEFAULT_LISTEN};

#[derive(Debug, Parser)]
#[command(
    name = "tom",
    version,
    about = "TOM: Trusted Orchestration Manager gateway. Every orchestration action becomes one ledger transaction."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway's REST API (embedded ledger by default; --fabric PROFILE for a network).
    Serve(ServeArgs),
    /// Check the embedded ledger's files: block hashes, signatures and state, end to end.
    Verify(VerifyArgs),
    /// Rewrite the embedded ledger's indexes with full pages and give the freed space back to
    /// the disk (run with `tom serve` stopped; the block log is not touched).
    Compact {
        /// The gateway's data directory (the ledger is in its `ledger/`).
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Manage the ledger identities and API tokens the gateway holds.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Audit queries against a running gateway.
    Audit {
        #[command(flatten)]
        gateway: GatewayArgs,
        #[command(flatten)]
        output: OutputArgs,
        #[command(subcommand)]
        query: AuditQuery,
    },
    /// Run a demonstration scenario.
    #[command(subcommand)]
    Demo(DemoCommand),
}

/// `tom verify`. An auditor who verified the log before resumes from their own signed
/// checkpoint: the blocks it pins are re-hashed (no signature checked), only later blocks get
/// every check.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The gateway's data directory (the ledger is in its `ledger/`).
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The node's public key (SubjectPublicKeyInfo PEM) as the auditor keeps it; default: the
    /// `node.pub.pem` in the ledger directory.
    #[arg(long, value_name = "PUB.pem")]
    pub node_public_key: Option<PathBuf>,
    /// After a successful verification, write a checkpoint (DSSE envelope over an in-toto
    /// statement) signed with --checkpoint-key, to resume from next time.
    #[arg(long, value_name = "FILE", requires = "checkpoint_key")]
    pub checkpoint_out: Option<PathBuf>,
    /// The auditor's private key (PKCS#8 ECDSA P-256 PEM) that signs --checkpoint-out.
    #[arg(long, value_name = "KEY.pem", requires = "checkpoint_out")]
    pub checkpoint_key: Option<PathBuf>,
    /// Resume from this checkpoint: blocks it pins are re-hashed, later ones fully checked.
    #[arg(long, value_name = "FILE", requires = "checkpoint_public_key")]
    pub resume: Option<PathBuf>,
    /// The auditor's public key (PUBLIC KEY PEM) or certificate that must have signed --resume.
    #[arg(long, value_name = "PUB.pem", requires = "resume")]
    pub checkpoint_public_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Identities, tokens and the embedded ledger live here; created if missing.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Submit to the Fabric network described by this connection profile instead.
    #[arg(long, value_name = "PROFILE")]
    pub fabric: Option<PathBuf>,
    /// Keep the ledger in memory only (nothing survives a restart); for trying the API.
    #[arg(long)]
    pub in_memory: bool,
    /// Carry out placements and terminations on the local Docker Swarm (the engine must be a
    /// swarm manager); without it the gateway only records them.
    #[arg(long)]
    pub swarm: bool,
    /// With --swarm: the identity (in the data dir) that signs recovery, drift and node records.
    #[arg(long, default_value = "orchestrator")]
    pub swarm_identity: String,
    /// With --swarm: seconds between reconciliations of the swarm against the ledger.
    #[arg(long, default_value_t = 60)]
    pub reconcile_secs: u64,
    /// With --swarm: remove services the ledger never authorised (they are recorded as drift either way).
    #[arg(long)]
    pub remove_unauthorised: bool,
    /// Seconds a client has to send a request's headers in full (also the longest wait for the
    /// next request on a kept-alive connection); slower connections are closed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight before it is closed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
    /// Connections open at once (always kept 128 below the open-file limit, which is raised to
    /// its hard limit at start). At the cap a new connection sheds the longest-idle one, or gets
    /// 503 if all are busy.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
}

impl ServeArgs {
    /// The connection limits these flags set.
    pub fn serve_options(&self) -> tom_gateway::app::ServeOptions {
        tom_gateway::app::ServeOptions {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Add a ledger identity (certificate + PKCS#8 P-256 key) and an API token for it.
    Add {
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Name of the identity in the gateway (letters, digits, '-', '_', '.').
        #[arg(long)]
        name: String,
        /// MSP id of its organisation.
        #[arg(long)]
        msp: String,
        /// Certificate, PEM file.
        #[arg(long)]
        cert: PathBuf,
        /// Private key, PKCS#8 PEM file.
        #[arg(long)]
        key: PathBuf,
        /// Token file: used if it exists, else a new token is written there (mode 0600).
        /// Without it a new token is printed once.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Issue a new identity of the development organisation (a device or workload that signs
    /// its own data, another orchestrator, ...) with the data directory's development CA.
    Issue {
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Name of the identity, also its certificate's common name.
        #[arg(long)]
        name: String,
        /// The tom.role it carries: admin, orchestrator, device or auditor.
        #[arg(long)]
        role: String,
        /// Token file: used if it exists, else a new token is written there (mode 0600).
        /// Without it a new token is printed once.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Rotate an identity's token without downtime: a new token now, the old ones still valid
    /// for --overlap seconds, then refused (or revoke them earlier with `tom identity revoke`).
    Rotate {
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        #[arg(long)]
        name: String,
        /// Seconds the old tokens stay valid.
        #[arg(long, default_value_t = 3600)]
        overlap: u64,
        /// Token file for the new token: used if it exists, else written there (mode 0600).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Revoke a token (given as text or in a file), or every token of an identity; a running
    /// gateway refuses it within a second.
    Revoke {
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// The token file of the token to revoke.
        #[arg(long, conflicts_with_all = ["token", "name"])]
        token_file: Option<PathBuf>,
        /// The token to revoke.
        #[arg(long, conflicts_with = "name")]
        token: Option<String>,
        /// Revoke every token of this identity.
        #[arg(long)]
        name: Option<String>,
    },
    /// List the identities (name, agent, role).
    List {
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Gateway base URL.
    #[arg(
        long,
        global = true,
        env = "TOM_GATEWAY",
        default_value = "http://127.0.0.1:8080"
    )]
    pub gateway: String,
    /// API token (e.g. from <data-dir>/dev-credentials.json); required.
    #[arg(long, global = true, env = "TOM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// How `tom audit` prints its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people: aligned, wrapped.
    Text,
    /// For programs: the gateway's JSON.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// text (aligned and wrapped, the default when stdout is a terminal) or json (the default
    /// otherwise, so scripts get JSON; the same as --json).
    #[arg(long, global = true, value_enum)]
    pub format: Option<OutputFormat>,
}

impl OutputArgs {
    /// JSON when asked (`--json`, `--format json`), text when asked, otherwise JSON unless
    /// stdout is a terminal.
    pub fn json(&self, json_flag: bool) -> bool {
        match (json_flag, self.format) {
            (true, _) | (false, Some(OutputFormat::Json)) => true,
            (false, Some(OutputFormat::Text)) => false,
            (false, None) => !std::io::IsTerminal::is_terminal(&std::io::stdout()),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DirectionArg {
    Up,
    Down,
    Both,
}

#[derive(Debug, Subcommand)]
pub enum AuditQuery {
    /// A device, container, data item or contract.
    Entity {
        id: String,
        /// Print the gateway's JSON (the default when stdout is not a terminal).
        #[arg(long)]
        json: bool,
    },
    /// Every committed version of an entity.
    History {
        id: String,
        /// Print the gateway's JSON (the default when stdout is not a terminal).
        #[arg(long)]
        json: bool,
    },
    /// Lineage of an entity.
    Lineage {
        id: String,
        #[arg(long, value_enum, default_value = "up")]
        direction: DirectionArg,
        #[arg(long)]
        depth: Option<u32>,
        #[command(flatten)]
        bounds: LineageBounds,
        /// Print the gateway's JSON (the default when stdout is not a terminal).
        #[arg(long)]
        json: bool,
    },
    /// The lineage as W3C PROV-JSON.
    Prov {
        id: String,
        #[arg(long, value_enum, default_value = "up")]
        direction: DirectionArg,
        #[arg(long)]
        depth: Option<u32>,
        #[command(flatten)]
        bounds: LineageBounds,
        /// Print the gateway's JSON (the default when stdout is not a terminal).
        #[arg(long)]
        json: bool,
    },
    /// Download an evidence bundle for an entity's lineage (check it with verify-evidence).
    Evidence {
        id: String,
        #[arg(long, value_enum, default_value = "up")]
        direction: DirectionArg,
        #[arg(long)]
        depth: Option<u32>,
        /// Where to write the bundle.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Check an evidence bundle offline: no gateway, no data directory.
    VerifyEvidence {
        file: PathBuf,
        /// A CA certificate (PEM) creator certificates must chain to; repeat for several.
        #[arg(long, value_name = "CA.pem")]
        trust: Vec<PathBuf>,
        /// The node public key (PEM, node.pub.pem) the embedded ledger's blocks must be signed with.
        #[arg(long, value_name = "PEM")]
        node_key: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The incident report for an entity: chain of custody, records, failures and drift nearby,
    /// and the verdict on its evidence bundle.
    Report {
        id: String,
        #[arg(long)]
        depth: Option<u32>,
        /// The report's facts as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ledger records by agent or entity in a time window.
    Records {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        entity: Option<String>,
        /// RFC 3339, inclusive.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339, exclusive.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        page_size: Option<u32>,
        #[arg(long)]
        bookmark: Option<String>,
        /// Follow the bookmarks and print every page's records as one list.
        #[arg(long, conflicts_with = "bookmark")]
        all: bool,
        /// Print the gateway's JSON (the default when stdout is not a terminal).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// The paper's smart-city scenario, then the incident audit of the traffic light's ACK.
    SmartCity {
        /// Run against this gateway (its data dir prepared with `tom demo install`); without it
        /// an in-process gateway on a temporary data directory is used.
        #[arg(long)]
        gateway: Option<String>,
        /// The demo-credentials.json that `tom demo install` wrote.
        #[arg(long, requires = "gateway")]
        credentials: Option<PathBuf>,
        /// The channel (Fabric) or embedded ledger name the devices and workloads sign their
        /// claims for; the ledger refuses claims made for another.
        #[arg(long, env = "TOM_LEDGER", default_value = tom_contract::simulation::DEFAULT_CHANNEL)]
        ledger: String,
    },
    /// Add the demo's organisations, identities and tokens to a data directory, for running the
    /// demo against `tom serve`; writes <data-dir>/demo-credentials.json. The demo PKI is issued
    /// fresh into <data-dir>/demo-pki/ (kept for later runs) unless --fixture-pki names one.
    Install {
        #[arg(long, default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Use this PKI directory (the layout of the repository's fixtures/pki) instead of
        /// issuing a fresh one: for a test network whose peers already trust the committed
        /// fixture CAs. Those private keys are public, so this needs
        /// --insecure-public-demo-keys.
        #[arg(long, value_name = "DIR")]
        fixture_pki: Option<PathBuf>,
        /// Accept that --fixture-pki's private keys (CA keys included) are public: anyone can
        /// then act as those organisations on this gateway. Never for a data directory that
        /// holds anything of value.
        #[arg(long, requires = "fixture_pki")]
        insecure_public_demo_keys: bool,
        /// The Fabric connection profile the gateway will serve with (`tom serve --fabric`):
        /// checked now, and named in the printed next steps with its channel.
        #[arg(long)]
        fabric: Option<PathBuf>,
    },
}

/// A minimal JSON client for the gateway's API.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// The same gateway as another caller.
    pub fn as_token(&self, token: &str) -> Client {
        Client {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}: gateway unreachable"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("{method} {url}: reading the response"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            bail!("{method} {path}: {status}: {message}");
        }
        Ok(value)
    }
}

pub(crate) fn direction(d: DirectionArg) -> &'static str {
    match d {
        DirectionArg::Up => "up",
        DirectionArg::Down => "down",
        DirectionArg::Both => "both",
    }
}

/// How much of a lineage one answer holds, and where a truncated one continues.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LineageBounds {
    /// At most this many nodes in the answer (default 500, at most 2000).
    #[arg(long)]
    pub limit: Option<u32>,
    /// At most this many neighbours followed per node and relation kind (default 100).
    #[arg(long)]
    pub fan_out: Option<u32>,
    /// Continue a truncated answer (the bookmark it printed; same id, direction and depth).
    #[arg(long)]
    pub bookmark: Option<String>,
}

impl LineageBounds {
    fn query(&self) -> String {
        let mut q = String::new();
        if let Some(limit) = self.limit {
            q.push_str(&format!("&limit={limit}"));
        }
        if let Some(fan_out) = self.fan_out {
            q.push_str(&format!("&fan_out={fan_out}"));
        }
        if let Some(bookmark) = &self.bookmark {
            q.push_str(&format!("&bookmark={}", encode(bookmark)));
        }
        q
    }
}

/// Percent-encode a query or path component (RFC 3986 unreserved characters pass).
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The path and query of an audit subcommand.
pub fn audit_path(query: &AuditQuery) -> String {
    let lineage = |base: &str, id: &str, d: DirectionArg, depth: Option<u32>| {
        let mut path = format!("{base}/{}?direction={}", encode(id), direction(d));
        if let Some(depth) = depth {
            path.push_str(&format!("&depth={depth}"));
        }
        path
    };
    match query {
        AuditQuery::Entity { id, .. } => format!("/v1/entities/{}", encode(id)),
        AuditQuery::History { id, .. } => format!("/v1/entities/{}/history", encode(id)),
        AuditQuery::Lineage {
            id,
            direction,
            depth,
            bounds,
            ..
        } => lineage("/v1/lineage", id, *direction, *depth) + &bounds.query(),
        AuditQuery::Prov {
            id,
            direction,
            depth,
            bounds,
            ..
        } => lineage("/v1/prov", id, *direction, *depth) + &bounds.query(),
        AuditQuery::Evidence {
            id,
            direction,
            depth,
            ..
        } => lineage("/v1/evidence", id, *direction, *depth),
        AuditQuery::VerifyEvidence { .. } | AuditQuery::Report { .. } => String::new(),
        AuditQuery::Records {
            agent,
            entity,
            from,
            to,
            page_size,
            bookmark,
            ..
        } => {
            let mut params = Vec::new();
            for (name, value) in [
                ("agent", agent),
                ("entity", entity),
                ("from", from),
                ("to", to),
                ("bookmark", bookmark),
            ] {
                if let Some(v) = value {
                    params.push(format!("{name}={}", encode(v)));
                }
            }
            if let Some(n) = page_size {
                params.push(format!("page_size={n}"));
            }
            if params.is_empty() {
                "/v1/records".into()
            } else {
                format!("/v1/records?{}", params.join("&"))
            }
        }
    }
}

pub async fn audit(
    gateway: &GatewayArgs,
    output: &OutputArgs,
    query: &AuditQuery,
) -> anyhow::Result<()> {
    if let Some(done) = crate::audit_cmd::run(gateway, output, query).await {
        return done;
    }
    let Some(token) = &gateway.token else {
        bail!("tom audit needs an API token: --token T (or TOM_TOKEN)");
    };
    let value = Client::new(&gateway.gateway, token)
        .get(&audit_path(query))
        .await?;
    crate::audit_cmd::print(query, output, &value)
}
