//! Smoke test of the Fabric back end against a real network: registers Org1MSP (idempotent),
//! identifies fresh devices, reads one back and waits for its chaincode event.
//!
//! ```text
//! cargo run -p tom-gateway --example fabric_smoke -- PROFILE [--submits N]
//!     [--admin CERT KEY] [--orchestrator CERT KEY]
//! ```
//!
//! PROFILE is a connection profile (see `network/connection-profile.example.json`). By default
//! the transactions are signed by the fixture identities `org1/admin` and `org1/orchestrator`
//! (they carry the `tom.role` attribute the contract needs), so the network's Org1MSP must trust
//! the fixture CA (`fixtures/pki/org1/ca.pem`); pass `--admin`/`--orchestrator` to use other
//! Org1MSP identities with those roles. With `--submits N` it prints submit latencies.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use tom_gateway::ledger::fabric::{ConnectionProfile, FabricLedger};
use tom_gateway::ledger::{Ledger, LedgerError, SigningIdentity};

struct Args {
    profile: String,
    submits: usize,
    admin: SigningIdentity,
    orchestrator: SigningIdentity,
}

fn fixture(org: &str, name: &str) -> anyhow::Result<SigningIdentity> {
    let id = tom_fixtures::identity(org, name);
    Ok(SigningIdentity::from_pem(
        id.msp_id,
        id.cert_pem,
        id.key_pkcs8_pem,
    )?)
}

fn from_files(msp_id: &str, cert: &str, key: &str) -> anyhow::Result<SigningIdentity> {
    let cert = std::fs::read_to_string(cert).with_context(|| format!("reading {cert}"))?;
    let key = std::fs::read_to_string(key).with_context(|| format!("reading {key}"))?;
    Ok(SigningIdentity::from_pem(msp_id, &cert, &key)?)
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut profile = None;
    let mut submits = 1;
    let mut admin = None;
    let mut orchestrator = None;
    while let Some(arg) = args.next() {
        let mut value = |what: &str| args.next().with_context(|| format!("{arg} needs {what}"));
        match arg.as_str() {
            "--submits" => {
                submits = value("a number")?
                    .parse()
                    .context("--submits needs a number")?
            }
            "--admin" => admin = Some((value("CERT")?, value("KEY")?)),
            "--orchestrator" => orchestrator = Some((value("CERT")?, value("KEY")?)),
            other if other.starts_with("--") => bail!("unknown option {other}"),
            other => profile = Some(other.to_owned()),
        }
    }
    let profile = profile.context(
        "usage: fabric_smoke PROFILE [--submits N] [--admin CERT KEY] [--orchestrator CERT KEY]",
    )?;
    let msp_id = tom_fixtures::org("org1").msp_id;
    Ok(Args {
        profile,
        submits: submits.max(1),
        admin: match admin {
            Some((cert, key)) => from_files(msp_id, &cert, &key)?,
            None => fixture("org1", "admin")?,
        },
        orchestrator: match orchestrator {
            Some((cert, key)) => from_files(msp_id, &cert, &key)?,
            None => fixture("org1", "orchestrator")?,
        },
    })
}

/// A correctly signed IdentifyDevice request for a device of Org1 with a certificate issued
/// for this run (a certificate identifies one device for ever, so runs cannot share one).
fn identify_device(device_id: &str, nonce: &str) -> anyhow::Result<Vec<u8>> {
    let ca = tom_fixtures::org("org1").ca();
    let issued = tom_fixtures::pki::issue_identity(
        &ca,
        device_id,
        Some("client"),
        Some("device"),
        (2024, 1, 1),
        (2099, 12, 31),
    )?;
    let request = tom_contract::requests::IdentifyDevice::signed(
        device_id,
        "Org1MSP",
        "sensor",
        &issued.cert_pem,
        nonce,
        tom_contract::simulation::DEFAULT_CHANNEL,
        |m| tom_fixtures::pki::sign_p256(&issued.key_pkcs8_pem, m).unwrap_or_default(),
    )
    .map_err(anyhow::Error::msg)?;
    Ok(serde_json::to_vec(&request)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let profile = ConnectionProfile::load(&args.profile)?;
    let ledger = FabricLedger::connect(&profile).await?;
    println!("connected: {}", ledger.describe());
    let mut events = ledger.subscribe();

    let org = tom_fixtures::org("org1");
    let register = serde_json::to_vec(
        &json!({ "msp_id": org.msp_id, "name": "org1", "ca_certificates": [org.ca_cert_pem] }),
    )?;
    match ledger.submit(&args.admin, "RegisterOrg", &register).await {
        Ok(s) => println!("RegisterOrg committed: tx {} in block {}", s.tx_id, s.block),
        Err(LedgerError::Rejected {
            status: 409,
            message,
        }) => println!("RegisterOrg: already registered ({message})"),
        Err(e) => return Err(e).context("RegisterOrg"),
    }

    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let mut latencies = Vec::with_capacity(args.submits);
    let mut last = None;
    for i in 0..args.submits {
        let device_id = format!("smoke-{run}-{i}");
        let request = identify_device(&device_id, &format!("nonce-{run}-{i}"))?;
        let started = Instant::now();
        let submitted = ledger
            .submit(&args.orchestrator, "IdentifyDevice", &request)
            .await
            .context("IdentifyDevice")?;
        latencies.push(started.elapsed());
        last = Some((device_id, submitted));
    }
    let Some((device_id, submitted)) = last else {
        bail!("no transaction was submitted")
    };
    println!(
        "IdentifyDevice committed: tx {} in block {}",
        submitted.tx_id, submitted.block
    );

    let entity = ledger
        .evaluate(
            &args.orchestrator,
            "GetEntity",
            &serde_json::to_vec(&json!({ "id": device_id }))?,
        )
        .await?;
    println!(
        "GetEntity {device_id}: {}",
        String::from_utf8_lossy(&entity)
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(remaining, events.recv())
            .await
            .context("no chaincode event for the last transaction within 30 s")??;
        if event.tx_id == submitted.tx_id {
            println!(
                "event {} for tx {} in block {}",
                event.name, event.tx_id, event.block
            );
            break;
        }
    }

    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "submit latency over {} transaction(s): median {:.0} ms, min {:.0} ms, max {:.0} ms",
        latencies.len(),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[0]),
        ms(latencies[latencies.len() - 1])
    );
    Ok(())
}
