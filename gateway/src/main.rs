//! `tom`: the gateway binary. Parses the command line and runs one command; all behaviour lives
//! in the `tom_gateway` library so tests and benchmarks run the same code.

mod audit_cmd;
mod cli;
mod config;
mod demo;

use std::path::Path;

use anyhow::Context;
use clap::Parser;
use tom_gateway::app::{self, AppState};
use tom_gateway::identities::{self, DevCredentials, IdentityStore};

use cli::{Cli, Command, DemoCommand, IdentityCommand};

/// `println!` that ignores a failing stdout (full disk, closed pipe) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // A log that cannot be written (stderr on a full disk, a closed pipe) is dropped: logging
        // must never take a request or the committer down. tracing-subscriber's own report of a
        // failed write goes through `eprintln!`, which panics when stderr fails, so it is off.
        .with_writer(|| LossyStderr)
        // Colour codes only for a person at a terminal: never in files, pipes or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Verify(args) => verify(&args),
        Command::Compact { data_dir } => config::compact_embedded(&data_dir),
        Command::Identity(command) => identity(command),
        Command::Audit {
            gateway,
            output,
            query,
        } => cli::audit(&gateway, &output, &query).await,
        Command::Demo(DemoCommand::SmartCity {
            gateway,
            credentials,
            ledger,
        }) => demo::smart_city(gateway.as_deref(), credentials.as_deref(), &ledger).await,
        Command::Demo(DemoCommand::Install {
            data_dir,
            fixture_pki,
            insecure_public_demo_keys,
            fabric,
        }) => {
            let fabric = fabric
                .as_deref()
                .map(demo::FabricTarget::load)
                .transpose()?;
            let public_keys = fixture_pki.is_some();
            let pki = match fixture_pki {
                None => demo::DemoPkiSource::Fresh,
                Some(dir) if insecure_public_demo_keys => {
                    eprintln!(
                        "WARNING: installing the demo organisations of {} into {}: their private keys (CA keys included) are public, so anyone can act as those organisations on this gateway. Use this data directory for tests only.",
                        dir.display(),
                        data_dir.display()
                    );
                    // The fuller warning, on stderr too so that it shows when stdout goes to a
                    // file or a pipe.
                    eprintln!("{}", demo::PUBLIC_KEYS_WARNING);
                    demo::DemoPkiSource::Public(dir)
                }
                Some(dir) => anyhow::bail!(
                    "refusing to install the demo organisations of {}: their private keys (CA keys included) are public, so anyone could act as those organisations on this gateway. For a throwaway test network add --insecure-public-demo-keys; otherwise leave out --fixture-pki and a fresh demo PKI is issued into {}",
                    dir.display(),
                    data_dir.join(demo::DEMO_PKI_DIR).display()
                ),
            };
            let path = demo::install(&data_dir, pki)?;
            say!(
                "{}",
                demo::install_summary(&data_dir, &path, fabric.as_ref(), public_keys)
            );
            Ok(())
        }
    }
}

async fn serve(args: cli::ServeArgs) -> anyhow::Result<()> {
    // Many clients must meet the connection cap, not the kernel's open-file limit.
    match app::raise_nofile_limit() {
        Ok((before, after)) => {
            tracing::info!(
                ?before,
                ?after,
                "open-file limit (RLIMIT_NOFILE soft) raised to the hard limit"
            )
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let serve_options = args.serve_options();
    let config =
        config::ServeConfig::new(&args.listen, args.data_dir, args.fabric, args.in_memory)?;
    let data_dir = &config.data_dir;
    let mut store = IdentityStore::open(data_dir)
        .with_context(|| format!("loading identities from {}", data_dir.display()))?;
    let created = if let config::LedgerChoice::Fabric(profile) = &config.ledger {
        // A Fabric network only knows the organisations its channel was configured with, so a
        // development organisation made up here could never transact: production identities
        // are configured instead.
        if store.is_empty() {
            anyhow::bail!(
                "--fabric {}: {} holds no identities; add the callers' Fabric identities with `tom identity add --data-dir {} --name N --msp MSP --cert CERT --key KEY`",
                profile.display(),
                data_dir.join("identities").display(),
                data_dir.display()
            );
        }
        None
    } else {
        identities::bootstrap_dev(&mut store, data_dir)
            .context("creating the development organisation")?
    };
    let ledger = config::open_ledger(&config.ledger, data_dir).await?;
    // Register the development organisation if this data dir has one that is not on the ledger
    // yet (first start, or a first start that stopped before the registration committed).
    if let Some(credentials) = read_dev_credentials(data_dir)? {
        if let Some(admin) = store.get("admin") {
            if app::ensure_dev_org(ledger.as_ref(), &admin, &credentials.ca_certificate)
                .await
                .context("registering the development organisation on the ledger")?
            {
                tracing::info!(
                    msp_id = identities::DEV_MSP_ID,
                    "registered the development organisation"
                );
            }
        }
    }
    let swarm_identity = match args.swarm {
        true => Some(
            store
                .get(&args.swarm_identity)
                .with_context(|| {
                    format!(
                        "--swarm-identity {}: no such identity in the data dir",
                        args.swarm_identity
                    )
                })?
                .signing
                .clone(),
        ),
        false => None,
    };
    let mut state = AppState::new(ledger.clone(), store);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("--listen {}: cannot bind", config.listen))?;
    let addr = listener.local_addr()?;
    let swarm = match swarm_identity {
        Some(identity) => Some(
            tom_gateway::orchestration::start_for_gateway(
                ledger.clone(),
                identity,
                data_dir,
                addr,
                std::time::Duration::from_secs(args.reconcile_secs),
                args.remove_unauthorised,
            )
            .await
            .context("starting Swarm orchestration (--swarm)")?,
        ),
        None => None,
    };
    if let Some(started) = &swarm {
        state = state.with_actions(started.actions());
    }
    // The stop signals are taken over before the address is announced: a service manager
    // (or a script) may send SIGTERM the moment it reads that line, and a signal that
    // arrives before tokio has installed its handler would kill the process uncleanly.
    let stop = stop_requested()?;
    tracing::info!(%addr, ledger = %ledger.describe(), "TOM gateway listening");
    if let Some(created) = created {
        print_dev_welcome(&created, addr);
    }
    // On stdout too, so scripts and tests that bind port 0 learn the address.
    say!(
        "TOM gateway listening on http://{addr} (ledger: {})",
        ledger.describe()
    );
    app::serve_with(listener, state, serve_options, async {
        stop.await;
        tracing::info!("shutting down: finishing in-flight requests");
    })
    .await?;
    if let Some(started) = swarm {
        started.shutdown().await;
    }
    Ok(())
}

/// Standard error for the log, ignoring write failures (ENOSPC, EPIPE): a lost log line is
/// better than a panicked request or committer thread.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Ctrl-C, or SIGTERM (how service managers and container runtimes ask a process to stop).
/// The handlers are installed when this is called, not when the returned future is first
/// polled, so a signal sent any time after the call is a request to stop, never a kill.
#[cfg(unix)]
fn stop_requested() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn stop_requested() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

fn read_dev_credentials(data_dir: &Path) -> anyhow::Result<Option<DevCredentials>> {
    let path = data_dir.join("dev-credentials.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(serde_json::from_slice(&text).with_context(|| {
        format!("{}: malformed", path.display())
    })?))
}

fn print_dev_welcome(created: &DevCredentials, addr: std::net::SocketAddr) {
    let file = created.path.display();
    say!("First start: created the development organisation {} (CA, admin, orchestrator and auditor identities).", created.msp_id);
    say!("Their API tokens are in {file} (keep it private).");
    say!("Try:");
    say!("  TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"tokens\"][\"orchestrator\"])' {file})");
    say!("  curl -s -H \"Authorization: Bearer $TOKEN\" http://{addr}/v1/records");
    say!("API description: http://{addr}/openapi.json");
    say!("Devices and workloads that sign their own data: `tom identity issue --name NAME --role device` (takes effect at once).");
}

/// `tom verify`; with a checkpoint to resume from or to write, or the auditor's own copy of
/// the node key, the auditor's path, else the plain check.
fn verify(args: &cli::VerifyArgs) -> anyhow::Result<()> {
    use tom_gateway::ledger::embedded::{
        node_key::PUBLIC_KEY_FILE, open_checkpoint, verify_from_checkpoint, verify_with_public_key,
        AuditorKey, AuditorPublicKey, MAX_CHECKPOINT_BYTES,
    };
    if args.node_public_key.is_none() && args.resume.is_none() && args.checkpoint_out.is_none() {
        return config::verify_embedded(&args.data_dir);
    }
    let read = |path: &Path, what: &str| {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {what} {}", path.display()))
    };
    let dir = config::ledger_dir(&args.data_dir);
    // The signing key is loaded first: a bad one must not be found after an hour of checking.
    let signer = match &args.checkpoint_key {
        Some(path) => Some(
            AuditorKey::from_pkcs8_pem(&read(path, "--checkpoint-key")?)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--checkpoint-key {}", path.display()))?,
        ),
        None => None,
    };
    let node_key_path = args
        .node_public_key
        .clone()
        .unwrap_or_else(|| dir.join(PUBLIC_KEY_FILE));
    let node_key = read(&node_key_path, "the node public key")?;
    let report = match (&args.resume, &args.checkpoint_public_key) {
        (Some(resume), Some(public)) => {
            let key = AuditorPublicKey::from_pem(&read(public, "--checkpoint-public-key")?)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--checkpoint-public-key {}", public.display()))?;
            // Bounded: the file is the auditor's, but may be anything by mistake.
            let envelope = {
                use std::io::Read as _;
                let mut bytes = Vec::new();
                std::fs::File::open(resume)
                    .and_then(|f| {
                        f.take(MAX_CHECKPOINT_BYTES as u64 + 1)
                            .read_to_end(&mut bytes)
                    })
                    .with_context(|| format!("cannot read --resume {}", resume.display()))?;
                bytes
            };
            let checkpoint = open_checkpoint(&envelope, &key)
                .with_context(|| format!("--resume {}", resume.display()))?;
            verify_from_checkpoint(&dir, &node_key, &checkpoint)
        }
        _ => verify_with_public_key(&dir, &node_key),
    }
    .with_context(|| format!("verifying the ledger in {}", dir.display()))?;
    say!("{report}");
    if let (Some(signer), Some(out)) = (signer, &args.checkpoint_out) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the system clock is before 1970")?;
        let verified_at = tom_contract::Timestamp {
            seconds: i64::try_from(now.as_secs()).context("the system clock is out of range")?,
            nanos: 0,
        };
        let envelope = signer
            .sign_checkpoint(&report, verified_at)
            .map_err(anyhow::Error::msg)?;
        let mut json = serde_json::to_vec_pretty(&envelope)?;
        json.push(b'\n');
        // Written beside the target and renamed, so an interrupted write never leaves half a
        // checkpoint where the last good one was.
        let temporary = out.with_extension("partial");
        std::fs::write(&temporary, json)
            .and_then(|()| std::fs::rename(&temporary, out))
            .with_context(|| format!("cannot write --checkpoint-out {}", out.display()))?;
        say!(
            "checkpoint written to {}: blocks 0..={} (tip {}), signed by {}",
            out.display(),
            report.blocks.saturating_sub(1),
            report.tip_hash,
            signer.fingerprint()
        );
    }
    Ok(())
}

fn identity(command: IdentityCommand) -> anyhow::Result<()> {
    match command {
        IdentityCommand::Add {
            data_dir,
            name,
            msp,
            cert,
            key,
            token_file,
        } => {
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            let mut store = IdentityStore::open(&data_dir)?;
            let identity = store.add(&name, &msp, &read(&cert)?, &read(&key)?)?;
            grant_token(&mut store, &identity, token_file.as_deref())?;
            Ok(())
        }
        IdentityCommand::Issue {
            data_dir,
            name,
            role,
            token_file,
        } => {
            let role = tom_contract::model::Role::parse(&role).with_context(|| {
                format!("--role {role:?}: expected admin, orchestrator, device or auditor")
            })?;
            let mut store = IdentityStore::open(&data_dir)?;
            let identity = identities::issue_dev_identity(&mut store, &data_dir, &name, role)?;
            grant_token(&mut store, &identity, token_file.as_deref())?;
            say!(
                "its certificate and key: {}",
                data_dir.join("identities").join(&name).display()
            );
            Ok(())
        }
        IdentityCommand::Rotate {
            data_dir,
            name,
            overlap,
            token_file,
        } => {
            let mut store = IdentityStore::open(&data_dir)?;
            let identity = store
                .get(&name)
                .with_context(|| format!("no identity named {name}"))?;
            let ending = store.expire_tokens_of(&name, overlap)?;
            grant_token(&mut store, &identity, token_file.as_deref())?;
            say!(
                "{ending} earlier token(s) of {name} stay valid for {overlap} s, then are refused"
            );
            Ok(())
        }
        IdentityCommand::Revoke {
            data_dir,
            token_file,
            token,
            name,
        } => {
            let token = match (token_file, token) {
                (Some(path), _) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?
                        .trim()
                        .to_owned(),
                ),
                (None, token) => token,
            };
            anyhow::ensure!(
                token.is_some() || name.is_some(),
                "give --token, --token-file or --name"
            );
            let mut store = IdentityStore::open(&data_dir)?;
            let revoked = store.revoke(token.as_deref(), name.as_deref())?;
            anyhow::ensure!(revoked > 0, "no such token");
            say!("revoked {revoked} token(s); a running gateway refuses them within a second");
            Ok(())
        }
        IdentityCommand::List { data_dir } => {
            let store = IdentityStore::open(&data_dir)?;
            for name in store.names() {
                if let Some(identity) = store.get(name) {
                    let role = identity.role.map_or("none".to_owned(), |r| r.to_string());
                    say!("{name}\t{}\t{role}", identity.agent_id);
                }
            }
            Ok(())
        }
    }
}

/// Give `identity` an API token (from `token_file` if it exists, else a new one written there or
/// printed once) and say so.
fn grant_token(
    store: &mut IdentityStore,
    identity: &identities::Identity,
    token_file: Option<&Path>,
) -> anyhow::Result<()> {
    let (token, source) = match token_file {
        Some(path) if path.exists() => (
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_owned(),
            format!("from {}", path.display()),
        ),
        Some(path) => {
            let token = identities::new_token()?;
            write_private(path, &token)?;
            (token, format!("written to {}", path.display()))
        }
        None => {
            let token = identities::new_token()?;
            say!("token (shown once): {token}");
            (token, "printed above".into())
        }
    };
    store.add_token(&identity.name, &token)?;
    let role = identity.role.map_or("none".to_owned(), |r| r.to_string());
    say!(
        "added identity {}: agent {}, role {role}; token {source}",
        identity.name,
        identity.agent_id
    );
    say!("a running gateway accepts it now (no restart needed)");
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{text}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
