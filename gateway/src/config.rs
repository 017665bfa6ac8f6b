//! What `tom serve` runs on: where it listens, its data directory and which ledger back end.
//!
//! Every field has a documented default, and a bad value is refused at start with an error that
//! names the flag (and the file, for a Fabric connection profile), never at the first request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use tom_gateway::ledger::Ledger;

/// Default `--listen`: loopback only, so a development gateway is not exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `--data-dir`: identities, tokens and (embedded) ledger files.
pub const DEFAULT_DATA_DIR: &str = ".tom-data";

/// Which ledger the gateway submits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerChoice {
    /// The embedded single-machine ledger in `<data-dir>/ledger` (default: no setup).
    Embedded,
    /// A Fabric network described by this connection profile (`--fabric PROFILE`).
    Fabric(PathBuf),
    /// Nothing on disk (`--in-memory`): for trying the API; every record is lost on exit.
    Memory,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `--listen` (default [`DEFAULT_LISTEN`]).
    pub listen: SocketAddr,
    /// `--data-dir` (default [`DEFAULT_DATA_DIR`]); created if missing.
    pub data_dir: PathBuf,
    /// `--fabric` / `--in-memory` (default: embedded).
    pub ledger: LedgerChoice,
}

impl ServeConfig {
    pub fn new(
        listen: &str,
        data_dir: PathBuf,
        fabric: Option<PathBuf>,
        in_memory: bool,
    ) -> anyhow::Result<ServeConfig> {
        let listen: SocketAddr = listen.parse().with_context(|| {
            format!("--listen {listen:?} is not an address like 127.0.0.1:8080")
        })?;
        let ledger = match (fabric, in_memory) {
            (Some(_), true) => bail!("--fabric and --in-memory exclude each other"),
            (Some(profile), false) => {
                if !profile.is_file() {
                    bail!(
                        "--fabric {}: no such connection profile file",
                        profile.display()
                    );
                }
                LedgerChoice::Fabric(profile)
            }
            (None, true) => LedgerChoice::Memory,
            (None, false) => LedgerChoice::Embedded,
        };
        if data_dir.exists() && !data_dir.is_dir() {
            bail!(
                "--data-dir {} exists and is not a directory",
                data_dir.display()
            );
        }
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("--data-dir {}: cannot create it", data_dir.display()))?;
        Ok(ServeConfig {
            listen,
            data_dir,
            ledger,
        })
    }
}

/// Open the configured ledger.
pub async fn open_ledger(
    choice: &LedgerChoice,
    data_dir: &std::path::Path,
) -> anyhow::Result<Arc<dyn Ledger>> {
    Ok(match choice {
        LedgerChoice::Memory => Arc::new(tom_gateway::ledger::memory::InMemoryLedger::new()),
        LedgerChoice::Embedded => open_embedded(data_dir)?,
        LedgerChoice::Fabric(profile) => {
            use tom_gateway::ledger::fabric::{ConnectionProfile, FabricLedger};
            let loaded = ConnectionProfile::load(profile)
                .with_context(|| format!("--fabric {}", profile.display()))?;
            let ledger = FabricLedger::connect(&loaded).await.with_context(|| {
                format!("connecting to the Fabric network of {}", profile.display())
            })?;
            Arc::new(ledger)
        }
    })
}

/// Where the embedded ledger keeps its store and node key inside the data directory.
pub fn ledger_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("ledger")
}

fn open_embedded(data_dir: &std::path::Path) -> anyhow::Result<Arc<dyn Ledger>> {
    use tom_gateway::ledger::embedded::{EmbeddedLedger, EmbeddedOptions};
    let dir = ledger_dir(data_dir);
    let ledger = EmbeddedLedger::open(&dir, EmbeddedOptions::default())
        .with_context(|| format!("opening the embedded ledger in {}", dir.display()))?;
    Ok(Arc::new(ledger))
}

/// `tom compact`: rewrite the embedded ledger's indexes of `data_dir` with full pages.
pub fn compact_embedded(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let dir = ledger_dir(data_dir);
    let started = std::time::Instant::now();
    let report = tom_gateway::ledger::embedded::compact(&dir)
        .with_context(|| format!("compacting the ledger in {}", dir.display()))?;
    println!("{report}");
    println!("compacted in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `tom verify`: check the embedded ledger of `data_dir` end to end (hash links, block and
/// creator signatures, state); an error names the first tampered block.
pub fn verify_embedded(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let dir = ledger_dir(data_dir);
    let report = tom_gateway::ledger::embedded::verify(&dir)
        .with_context(|| format!("verifying the ledger in {}", dir.display()))?;
    println!("{report}");
    Ok(())
}
