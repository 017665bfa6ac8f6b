//! `tom-workload`: the entrypoint of TOM's test image. See the library docs for the roles.
//!
//! Configuration comes from flags or the environment (`TOM_GATEWAY`, `TOM_TOKEN`,
//! `TOM_KEY_FILE`, `TOM_DATA_DIR`, `TOM_ACTIVITY`). After its work a workload keeps running
//! (a Swarm service's task should not exit), unless `--exit` is given.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tom-workload",
    about = "TOM's test workload: sensor, collector/analyser, actuator"
)]
struct Cli {
    /// The gateway's base URL (plain HTTP on loopback).
    #[arg(long, env = "TOM_GATEWAY", default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// The API token of the identity this workload acts as.
    #[arg(long, env = "TOM_TOKEN", default_value = "")]
    token: String,
    /// Read the token from this file when --token is empty.
    #[arg(long, env = "TOM_TOKEN_FILE", default_value = "/etc/tom/token")]
    token_file: PathBuf,
    /// The PKCS#8 PEM P-256 key that signs the data this workload generates.
    #[arg(long, env = "TOM_KEY_FILE", default_value = "/etc/tom/key.pem")]
    key_file: PathBuf,
    /// Where data bytes are kept off-chain (shared with the other workloads).
    #[arg(long, env = "TOM_DATA_DIR", default_value = "/data")]
    data_dir: PathBuf,
    /// The generating activity (container id, or device id) the signatures stand for.
    #[arg(long, env = "TOM_ACTIVITY", default_value = "")]
    activity: String,
    /// The channel (Fabric) or embedded ledger name that signed claims are meant for; the
    /// ledger refuses claims made for another.
    #[arg(long, env = "TOM_LEDGER", default_value = "tom")]
    ledger: String,
    /// How long to wait for inputs, in seconds.
    #[arg(long, env = "TOM_WAIT_SECS", default_value_t = 120)]
    wait_secs: u64,
    /// Exit after the work instead of idling.
    #[arg(long)]
    exit: bool,
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Produce signed readings.
    Sensor {
        #[arg(long)]
        kind: String,
        /// Data id (with --count > 1, ids are <data-id>-<n>).
        #[arg(long)]
        data_id: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long, default_value_t = 200)]
        interval_ms: u64,
    },
    /// Use inputs under a contract and record the data derived from them (collector, analyser).
    Derive {
        #[arg(long)]
        contract: String,
        /// Comma-separated data ids.
        #[arg(long, value_delimiter = ',', required = true)]
        inputs: Vec<String>,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        data_id: String,
    },
    /// Receive a command (a data item), use it under a contract, acknowledge it.
    Actuate {
        #[arg(long)]
        contract: String,
        #[arg(long)]
        command: String,
        #[arg(long)]
        data_id: String,
    },
    /// Do nothing but keep running (placement tests).
    Idle,
    /// Run a while, then fail (tests of a workload that dies after it was seen running).
    Crash {
        #[arg(long, default_value_t = 1000)]
        after_ms: u64,
    },
    /// Run with the arguments listed in a file, one per line (how a gateway's per-container
    /// configuration directory, mounted at /etc/tom, configures a placed workload); idle if the
    /// file does not exist. The image's default command.
    Run {
        #[arg(long, default_value = "/etc/tom/args")]
        file: PathBuf,
    },
}

fn main() -> Result<()> {
    let mut cli = Cli::parse();
    if let Role::Run { file } = &cli.role {
        let file = file.clone();
        if !file.exists() {
            cli.role = Role::Idle;
        } else {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let args = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned);
            cli = Cli::try_parse_from(std::iter::once("tom-workload".to_owned()).chain(args))
                .with_context(|| format!("the arguments in {}", file.display()))?;
            if let Role::Run { .. } = cli.role {
                anyhow::bail!("{} must not itself say `run`", file.display());
            }
        }
    }
    if cli.token.is_empty() && cli.token_file.exists() {
        let token = std::fs::read_to_string(&cli.token_file)
            .with_context(|| format!("reading {}", cli.token_file.display()))?;
        cli.token = token.trim().to_owned();
    }
    if let Role::Crash { after_ms } = cli.role {
        std::thread::sleep(Duration::from_millis(after_ms));
        anyhow::bail!("crashing on purpose after {after_ms} ms");
    }
    if let Role::Idle = cli.role {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let env = tom_workload::Env {
        gateway: cli.gateway,
        token: cli.token,
        data_dir: cli.data_dir,
        key: tom_workload::load_key(&cli.key_file)?,
        activity: cli.activity,
        ledger: cli.ledger,
        wait: Duration::from_secs(cli.wait_secs),
    };
    let produced = match &cli.role {
        Role::Sensor {
            kind,
            data_id,
            count,
            interval_ms,
        } => tom_workload::sensor(
            &env,
            kind,
            data_id,
            *count,
            Duration::from_millis(*interval_ms),
        )?,
        Role::Derive {
            contract,
            inputs,
            kind,
            data_id,
        } => vec![tom_workload::derive(&env, contract, inputs, kind, data_id)?],
        Role::Actuate {
            contract,
            command,
            data_id,
        } => vec![tom_workload::actuate(&env, contract, command, data_id)?],
        Role::Idle | Role::Run { .. } | Role::Crash { .. } => Vec::new(),
    };
    tom_workload::done(&env, &produced).context("marking the work done")?;
    println!("{} done: {produced:?}", env.activity);
    if !cli.exit {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    Ok(())
}
