//! `tom demo smart-city`: the paper's smart-city scenario (Section VI) through the REST API,
//! then the incident audit of the traffic light's acknowledgement.
//!
//! The scenario comes from `fixtures/scenarios/smart-city-traffic-lights.json`; the devices,
//! workloads, publisher and organisation admins are identities of a demo PKI (the organisations
//! of `tom_issuance::spec`), whose keys sign the id-proofs, image digests and data hashes the
//! contract checks. `tom demo install` issues that PKI fresh into `<data-dir>/demo-pki/`, so no
//! two installations share a key; only with `--fixture-pki <dir> --insecure-public-demo-keys`
//! does it use a PKI read from disk, such as the repository's `fixtures/pki` (whose private keys
//! are public) for a test Fabric network that trusts those CAs. The binary embeds no key: the
//! credentials file names the PKI directory. Without `--gateway` the demo starts a gateway in
//! this process on a temporary data directory; with it, the gateway's data directory must hold
//! the demo identities (`tom demo install`), and ids get a per-run suffix so the demo can be
//! repeated. Every step goes over HTTP, exactly as an orchestrator's would.
//! With the public fixture PKI `tom demo install` says so in a WARNING line (stdout and
//! stderr), and its next steps name `--fabric` (and the channel) when it installs for a Fabric
//! gateway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use tom_gateway::app::{self, AppState};
use tom_gateway::identities::{self, IdentityStore};
use tom_issuance::demo_pki::{DemoIdentity, DemoPki};
use tom_issuance::pki::IssuedIdentity;

use crate::cli::{encode, Client};

const SCENARIO: &str = include_str!("../../fixtures/scenarios/smart-city-traffic-lights.json");

#[derive(Debug, Deserialize)]
struct Scenario {
    name: String,
    orchestrator: String,
    auditor: String,
    image_publisher: String,
    devices: Vec<DeviceSpec>,
    containers: Vec<ContainerSpec>,
    contracts: Vec<ContractSpec>,
    #[serde(default)]
    negative_cases: Vec<NegativeCase>,
}

#[derive(Debug, Deserialize)]
struct DeviceSpec {
    id: String,
    identity: String,
    kind: String,
}

#[derive(Debug, Deserialize)]
struct ContainerSpec {
    id: String,
    image: String,
    identity: String,
    placed_on: String,
}

#[derive(Debug, Deserialize)]
struct ContractSpec {
    id: String,
    contractor: String,
    uses: Vec<UseSpec>,
    generates: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct UseSpec {
    kind: String,
    source: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NegativeCase {
    identity: String,
    expect: String,
}

fn scenario() -> anyhow::Result<Scenario> {
    serde_json::from_str(SCENARIO)
        .context("fixtures/scenarios/smart-city-traffic-lights.json is malformed")
}

/// `org1/traffic-light-1` → that identity of the demo PKI.
fn fixture<'a>(pki: &'a DemoPki, name: &str) -> anyhow::Result<&'a DemoIdentity> {
    let (org, id) = name
        .split_once('/')
        .with_context(|| format!("identity {name:?} is not <org>/<name>"))?;
    pki.identity(org, id)
        .with_context(|| format!("no identity {name} in the demo PKI {}", pki.dir.display()))
}

/// Where `tom demo install` issues a fresh demo PKI, inside the data directory.
pub const DEMO_PKI_DIR: &str = "demo-pki";

/// Which PKI `tom demo install` gives the demo organisations.
#[derive(Debug, Clone)]
pub enum DemoPkiSource {
    /// Issue one with fresh keys into `<data-dir>/demo-pki/` (or reuse the one a previous
    /// install issued there).
    Fresh,
    /// Read this directory (e.g. the repository's `fixtures/pki`, whose private keys are
    /// public). The caller has warned the operator.
    Public(PathBuf),
}

/// The gateway identity name of a fixture identity (`org1.traffic-light-1`).
fn gateway_name(name: &str) -> String {
    name.replace('/', ".")
}

/// Every identity that calls the API in the demo.
fn callers(s: &Scenario) -> Vec<String> {
    let mut names = vec![
        "org1/admin".to_owned(),
        "org2/admin".to_owned(),
        s.orchestrator.clone(),
        s.auditor.clone(),
    ];
    names.extend(s.devices.iter().map(|d| d.identity.clone()));
    names.extend(s.containers.iter().map(|c| c.identity.clone()));
    names.dedup();
    names
}

/// Add the demo's identities and tokens to `data_dir`; returns the credentials file, which also
/// names the demo PKI's directory.
pub fn install(data_dir: &Path, source: DemoPkiSource) -> anyhow::Result<PathBuf> {
    let s = scenario()?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let mut store = IdentityStore::open(data_dir)?;
    let path = data_dir.join("demo-credentials.json");
    let previous: Option<Value> = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).ok(),
        Err(_) => None,
    };
    let mut tokens: BTreeMap<String, String> = previous
        .as_ref()
        .and_then(|v| serde_json::from_value(v["tokens"].clone()).ok())
        .unwrap_or_default();
    // Absolute, so `--credentials` works from any directory.
    let pki_dir = match &source {
        DemoPkiSource::Fresh => data_dir
            .canonicalize()
            .with_context(|| format!("resolving {}", data_dir.display()))?
            .join(DEMO_PKI_DIR),
        DemoPkiSource::Public(dir) => dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?,
    };
    // The identities already in the store were issued by the PKI of the first install: signing
    // with another's keys would fail at every step, so say so before changing anything.
    if let Some(previous) = &previous {
        let before = previous["pki"].as_str().map(PathBuf::from);
        if before.as_deref() != Some(pki_dir.as_path()) {
            bail!(
                "{} already holds demo identities from {}; install into a new data directory, or name that PKI again",
                data_dir.display(),
                before.map_or(
                    "the committed fixture PKI (an earlier `tom demo install`)".to_owned(),
                    |d| d.display().to_string()
                )
            );
        }
    }
    let pki = match &source {
        DemoPkiSource::Fresh if pki_dir.join("org1/msp_id").exists() => DemoPki::load(&pki_dir)?,
        DemoPkiSource::Fresh => DemoPki::issue(&pki_dir)?,
        DemoPkiSource::Public(_) => DemoPki::load(&pki_dir)?,
    };
    for name in callers(&s) {
        let gateway_name = gateway_name(&name);
        if store.get(&gateway_name).is_none() {
            let f = fixture(&pki, &name)?;
            store.add(&gateway_name, &f.msp_id, &f.cert_pem, &f.key_pkcs8_pem)?;
        }
        if let std::collections::btree_map::Entry::Vacant(slot) = tokens.entry(gateway_name.clone())
        {
            let token = identities::new_token()?;
            store.add_token(&gateway_name, &token)?;
            slot.insert(token);
        }
    }
    let json = serde_json::to_vec_pretty(&json!({ "tokens": tokens, "pki": pki_dir }))?;
    write_private(&path, &json)?;
    Ok(path)
}

/// Printed by `tom demo install`: the fixture organisations' keys are in TOM's public repository.
pub const PUBLIC_KEYS_WARNING: &str = "WARNING: the demo identities are TOM's public test \
     fixtures: their private keys (organisation CAs, admins, orchestrators, devices) are \
     published in TOM's source repository, so anyone can sign as them. Use this data directory \
     and any ledger that trusts these CAs for a demo only, never for real devices or data.";

/// The Fabric network a demo data directory is meant for (`tom demo install --fabric`).
pub struct FabricTarget {
    profile: PathBuf,
    channel: String,
}

impl FabricTarget {
    /// Loads and checks the connection profile, so that a wrong path or field is reported
    /// before anything is installed.
    pub fn load(profile: &Path) -> anyhow::Result<FabricTarget> {
        // `load` checks every field that needs no file access, naming the file and field.
        let loaded = tom_gateway::ledger::fabric::ConnectionProfile::load(profile)
            .context("tom demo install --fabric")?;
        Ok(FabricTarget {
            profile: profile.to_owned(),
            channel: loaded.channel,
        })
    }
}

/// What `tom demo install` prints after installing: the warning when the organisations' keys
/// are the public fixture PKI's, where the tokens are, and the two commands to run next (with
/// `--fabric` and the channel for a Fabric gateway).
pub fn install_summary(
    data_dir: &Path,
    credentials: &Path,
    fabric: Option<&FabricTarget>,
    public_keys: bool,
) -> String {
    let warning = if public_keys {
        format!("{PUBLIC_KEYS_WARNING}\n")
    } else {
        String::new()
    };
    let serve_fabric = fabric
        .map(|f| format!(" --fabric {}", f.profile.display()))
        .unwrap_or_default();
    let ledger = fabric
        .filter(|f| f.channel != tom_contract::simulation::DEFAULT_CHANNEL)
        .map(|f| format!(" --ledger {}", f.channel))
        .unwrap_or_default();
    format!(
        "{warning}demo identities added to {data}; tokens in {creds}\nnext: start \
         the gateway with `tom serve --data-dir {data}{serve_fabric}`, then run `tom demo \
         smart-city --gateway http://127.0.0.1:8080 --credentials {creds}{ledger}`",
        data = data_dir.display(),
        creds = credentials.display(),
    )
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The tokens and the demo PKI a credentials file names.
fn read_credentials(path: &Path) -> anyhow::Result<(BTreeMap<String, String>, DemoPki)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: malformed", path.display()))?;
    let tokens = serde_json::from_value(value["tokens"].clone())
        .with_context(|| format!("{}: no tokens map", path.display()))?;
    let pki = value["pki"].as_str().with_context(|| {
        format!(
            "{} names no demo PKI (written by an older `tom demo install`): run `tom demo install` into a new data directory",
            path.display()
        )
    })?;
    let pki = DemoPki::load(Path::new(pki))
        .with_context(|| format!("loading the demo PKI that {} names", path.display()))?;
    Ok((tokens, pki))
}

/// Run the scenario and print the incident audit.
pub async fn smart_city(
    gateway: Option<&str>,
    credentials: Option<&Path>,
    ledger_name: &str,
) -> anyhow::Result<()> {
    match gateway {
        Some(url) => {
            let Some(credentials) = credentials else {
                bail!("--gateway needs --credentials <data-dir>/demo-credentials.json (see `tom demo install`)");
            };
            let suffix = format!("-{}", &identities::new_token()?[4..10]);
            let (tokens, pki) = read_credentials(credentials)?;
            run(url, &tokens, pki, &suffix, ledger_name).await
        }
        None => {
            let dir = tempfile::tempdir().context("creating a temporary data directory")?;
            let path = install(dir.path(), DemoPkiSource::Fresh)?;
            let store = IdentityStore::open(dir.path())?;
            let ledger =
                crate::config::open_ledger(&crate::config::LedgerChoice::Embedded, dir.path())
                    .await?;
            println!("In-process gateway, ledger: {}", ledger.describe());
            let running = app::spawn("127.0.0.1:0", AppState::new(ledger, store)).await?;
            let (tokens, pki) = read_credentials(&path)?;
            let result = run(&running.url(), &tokens, pki, "", ledger_name).await;
            running.stop().await?;
            result
        }
    }
}

/// Prints one committed step.
fn step(what: &str, committed: &Value) {
    let tx = committed["tx_id"].as_str().unwrap_or("?");
    let kind = committed["record"]["kind"].as_str().unwrap_or("?");
    let agent = committed["record"]["agent"]["id"].as_str().unwrap_or("?");
    println!(
        "  {kind:<15} {what:<58} by {agent:<28} tx {}… block {}",
        &tx[..tx.len().min(12)],
        committed["block"]
    );
}

fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
    )
}

/// Sign with a demo PKI or freshly issued key (both checked PKCS#8 P-256 when loaded or
/// issued; an empty signature would be refused by the contract with its reason).
fn sign(key_pkcs8_pem: &str, message: &[u8]) -> Vec<u8> {
    tom_issuance::pki::sign_p256(key_pkcs8_pem, message).unwrap_or_default()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

struct Demo {
    clients: BTreeMap<String, Client>,
    suffix: String,
    /// The channel or ledger name signed claims are made for.
    ledger_name: String,
    /// The orchestrator that submits for devices and workloads without their own token.
    orchestrator: String,
    /// Device and workload identities issued for this run, by fixture name. A certificate
    /// identifies one entity for ever, so a repeated run (its ids suffixed) cannot reuse the
    /// fixture certificates the first run bound: it issues fresh ones from the same CAs, and
    /// their data is submitted by the orchestrator acting for their organisation.
    fresh: BTreeMap<String, IssuedIdentity>,
    /// The demo organisations and identities (read from the directory the credentials name).
    pki: DemoPki,
}

/// Who signs for a device or workload, and its certificate.
struct EntitySigner<'a> {
    cert_pem: &'a str,
    key_pkcs8_pem: &'a str,
    /// The identity that submits its requests.
    submitter: &'a str,
}

impl Demo {
    fn as_(&self, fixture_name: &str) -> anyhow::Result<&Client> {
        self.clients
            .get(&gateway_name(fixture_name))
            .with_context(|| {
                format!(
                    "no token for {} in the demo credentials",
                    gateway_name(fixture_name)
                )
            })
    }

    /// The certificate and key of a device or workload, and who submits for it.
    fn signer<'a>(&'a self, name: &'a str) -> anyhow::Result<EntitySigner<'a>> {
        if let Some(issued) = self.fresh.get(name) {
            return Ok(EntitySigner {
                cert_pem: &issued.cert_pem,
                key_pkcs8_pem: &issued.key_pkcs8_pem,
                submitter: &self.orchestrator,
            });
        }
        let f = fixture(&self.pki, name)?;
        Ok(EntitySigner {
            cert_pem: &f.cert_pem,
            key_pkcs8_pem: &f.key_pkcs8_pem,
            submitter: name,
        })
    }

    fn id(&self, base: &str) -> String {
        format!("{base}{}", self.suffix)
    }

    fn identify_device_body(
        &self,
        device_id: &str,
        identity: &str,
        kind: &str,
    ) -> anyhow::Result<Value> {
        let org = &fixture(&self.pki, identity)?.msp_id;
        let identity = self.signer(identity)?;
        let nonce = format!("nonce-{}", &identities::new_token()?[4..20]);
        let request = tom_contract::requests::IdentifyDevice::signed(
            device_id,
            org,
            kind,
            identity.cert_pem,
            &nonce,
            &self.ledger_name,
            |m| sign(identity.key_pkcs8_pem, m),
        )
        .map_err(anyhow::Error::msg)?;
        Ok(serde_json::to_value(request)?)
    }

    /// Data leaves `generator`, signed by `signer`'s key and recorded as `signer`.
    async fn record_data(
        &self,
        signer: &str,
        data_id: &str,
        kind: &str,
        generator: &str,
        derived_from: &[String],
    ) -> anyhow::Result<()> {
        let bytes = format!("{kind} {data_id}: demo payload");
        let signer = self.signer(signer)?;
        let body = tom_contract::requests::RecordData {
            data_id: data_id.to_owned(),
            kind: kind.to_owned(),
            hash: sha256(bytes.as_bytes()),
            size: bytes.len() as u64,
            location: format!("tom-demo://data/{data_id}"),
            generated_by: generator.to_owned(),
            derived_from: derived_from.to_vec(),
            claim: Default::default(),
        }
        .sign(&self.ledger_name, "", |m| sign(signer.key_pkcs8_pem, m))
        .map_err(anyhow::Error::msg)?;
        let body = serde_json::to_value(body)?;
        let committed = self.as_(signer.submitter)?.post("/v1/data", &body).await?;
        step(&format!("{data_id} ({kind}) from {generator}"), &committed);
        Ok(())
    }

    async fn exec(&self, caller: &str, contract: &str, data: &str) -> anyhow::Result<()> {
        let caller = if self.fresh.contains_key(caller) {
            self.orchestrator.as_str()
        } else {
            caller
        };
        let committed = self
            .as_(caller)?
            .post(
                "/v1/executions",
                &json!({ "contract_id": contract, "data_id": data }),
            )
            .await?;
        step(&format!("EXEC {data} under {contract}"), &committed);
        Ok(())
    }
}

async fn run(
    url: &str,
    tokens: &BTreeMap<String, String>,
    pki: DemoPki,
    suffix: &str,
    ledger_name: &str,
) -> anyhow::Result<()> {
    let s = scenario()?;
    let base = Client::new(url, "");
    let clients = tokens
        .iter()
        .map(|(name, token)| (name.clone(), base.as_token(token)))
        .collect();
    let mut fresh = BTreeMap::new();
    if !suffix.is_empty() {
        let names = s
            .devices
            .iter()
            .map(|x| &x.identity)
            .chain(s.containers.iter().map(|c| &c.identity));
        for name in names {
            let f = fixture(&pki, name)?;
            let ca = &pki
                .org(&f.org)
                .with_context(|| format!("no demo organisation {}", f.org))?
                .ca;
            let issued = tom_issuance::pki::issue_identity(
                ca,
                &format!("{}{suffix}", f.name),
                Some("client"),
                Some("device"),
                (2024, 1, 1),
                (2099, 12, 31),
            )?;
            fresh.insert(name.clone(), issued);
        }
    }
    let d = Demo {
        clients,
        suffix: suffix.to_owned(),
        ledger_name: ledger_name.to_owned(),
        orchestrator: s.orchestrator.clone(),
        fresh,
        pki,
    };
    let orch = d.as_(&s.orchestrator)?;
    println!("Scenario {} against {url}", s.name);

    println!("\n1. Organisations register their CAs (admins)");
    let publisher = fixture(&d.pki, &s.image_publisher)?;
    let demo_org = |name: &str| {
        d.pki
            .org(name)
            .with_context(|| format!("no demo organisation {name}"))
    };
    for (admin, org, policy) in [
        (
            "org1/admin",
            demo_org("org1")?,
            json!({ "require_image_signature": true, "publishers": { "city-publisher": publisher.cert_pem } }),
        ),
        // The mobility provider lets the city identify its car when it enters the city's
        // network (as a phone hands over to a local network) and shares the car's data with
        // the city; nothing else of Org2 is the city's to act on.
        (
            "org2/admin",
            demo_org("org2")?,
            json!({ "orchestrators": ["Org1MSP"], "shares_data_with": ["Org1MSP"] }),
        ),
    ] {
        let body =
            json!({ "msp_id": org.msp_id, "ca_certificates": [org.ca.cert_pem], "policy": policy });
        step(
            &format!("register {}", org.msp_id),
            &d.as_(admin)?.post("/v1/orgs", &body).await?,
        );
    }

    println!("\n2. Devices join with certificate + signed nonce");
    for device in &s.devices {
        let id = d.id(&device.id);
        let body = d.identify_device_body(&id, &device.identity, &device.kind)?;
        step(
            &format!("device {id} ({})", device.kind),
            &orch.post("/v1/devices", &body).await?,
        );
    }
    for case in &s.negative_cases {
        let body = d.identify_device_body(
            &d.id(&gateway_name(&case.identity).replace('.', "-")),
            &case.identity,
            "sensor",
        )?;
        match orch.post("/v1/devices", &body).await {
            Ok(_) => bail!(
                "{} joined, but the scenario expects it {}",
                case.identity,
                case.expect
            ),
            Err(e) => println!(
                "  refused         {:<58} ({})\n                  -> {e}",
                case.identity, case.expect
            ),
        }
    }

    println!("\n3. Containers join (signed image digest, workload certificate) and are placed");
    for container in &s.containers {
        let id = d.id(&container.id);
        let digest = sha256(container.image.as_bytes());
        let workload = d.signer(&container.identity)?;
        let nonce = format!("nonce-{}", &identities::new_token()?[4..20]);
        let body = tom_contract::requests::IdentifyContainer {
            container_id: id.clone(),
            org: fixture(&d.pki, &container.identity)?.msp_id.clone(),
            image: container.image.clone(),
            publisher_signature: Some(tom_contract::requests::PublisherSignature {
                publisher: "city-publisher".to_owned(),
                signature: b64(&sign(&publisher.key_pkcs8_pem, digest.as_bytes())),
            }),
            digest,
            certificate: None,
            nonce: None,
            proof: None,
        }
        .with_workload_identity(workload.cert_pem, &nonce, &d.ledger_name, |m| {
            sign(workload.key_pkcs8_pem, m)
        })
        .map_err(anyhow::Error::msg)?;
        let body = serde_json::to_value(body)?;
        step(
            &format!("container {id} {}", container.image),
            &orch.post("/v1/containers", &body).await?,
        );
    }
    for container in &s.containers {
        let body =
            json!({ "container_id": d.id(&container.id), "device_id": d.id(&container.placed_on) });
        step(
            &format!(
                "place {} on {}",
                d.id(&container.id),
                d.id(&container.placed_on)
            ),
            &orch.post("/v1/placements", &body).await?,
        );
    }

    println!("\n4. Processing contracts (USE / GENERATE) grant credentials");
    let deadline = tom_contract::Timestamp::from_seconds(
        tom_gateway::clock::Clock::now(&tom_gateway::clock::SystemClock).seconds + 3600,
    )
    .to_rfc3339();
    let light = s
        .devices
        .iter()
        .find(|x| x.kind == "actuator")
        .context("the scenario has no actuator")?;
    let analyser = s
        .containers
        .iter()
        .find(|c| c.id == "analyser")
        .context("the scenario has no analyser")?;
    let collector = s
        .containers
        .iter()
        .find(|c| c.id == "collector")
        .context("the scenario has no collector")?;
    let mut contracts: Vec<(String, String, Value, Value)> = s
        .contracts
        .iter()
        .map(|c| {
            let uses: Vec<Value> = c
                .uses
                .iter()
                .map(|u| json!({ "kind": u.kind, "source": u.source.as_ref().map(|x| d.id(x)) }))
                .collect();
            (
                d.id(&c.id),
                d.id(&c.contractor),
                json!(uses),
                json!(c.generates),
            )
        })
        .collect();
    // SET(light, colour): the traffic light applies the timing plan and acknowledges it.
    let apply = d.id("apply-signal-timing");
    contracts.push((
        apply.clone(),
        d.id(&light.id),
        json!([{ "kind": "signal-timing-plan", "source": d.id(&analyser.id) }]),
        json!([{ "kind": "signal-ack" }]),
    ));
    for (id, contractor, uses, generates) in &contracts {
        let body = json!({ "contract_id": id, "contractor": contractor, "uses": uses, "generates": generates, "deadline": deadline });
        step(
            &format!("contract {id}: {contractor}"),
            &orch.post("/v1/contracts", &body).await?,
        );
    }
    let contract_of = |contractor: &str| {
        contracts
            .iter()
            .find(|c| c.1 == d.id(contractor))
            .map(|c| c.0.clone())
            .context("no contract for the contractor")
    };

    println!("\n5. Data flows: signed sensor data, EXECs under contracts, derived outputs");
    let car = s
        .devices
        .iter()
        .find(|x| x.kind == "sensor")
        .context("the scenario has no sensor")?;
    let (count, position, summary, plan, ack) = (
        d.id("vehicle-count-1"),
        d.id("vehicle-position-1"),
        d.id("junction-summary-1"),
        d.id("timing-plan-1"),
        d.id("signal-ack-1"),
    );
    d.record_data(
        &light.identity,
        &count,
        "vehicle-count",
        &d.id(&light.id),
        &[],
    )
    .await?;
    d.record_data(
        &car.identity,
        &position,
        "vehicle-position",
        &d.id(&car.id),
        &[],
    )
    .await?;
    let collect = contract_of(&collector.id)?;
    d.exec(&s.orchestrator, &collect, &count).await?;
    d.exec(&s.orchestrator, &collect, &position).await?;
    d.record_data(
        &collector.identity,
        &summary,
        "junction-traffic-summary",
        &d.id(&collector.id),
        &[count.clone(), position.clone()],
    )
    .await?;
    d.exec(&s.orchestrator, &contract_of(&analyser.id)?, &summary)
        .await?;
    d.record_data(
        &analyser.identity,
        &plan,
        "signal-timing-plan",
        &d.id(&analyser.id),
        std::slice::from_ref(&summary),
    )
    .await?;
    d.exec(&light.identity, &apply, &plan).await?;
    d.record_data(
        &light.identity,
        &ack,
        "signal-ack",
        &d.id(&light.id),
        std::slice::from_ref(&plan),
    )
    .await?;

    let auditor = d.as_(&s.auditor)?;
    let lineage = auditor
        .get(&format!(
            "/v1/lineage/{}?direction=up&depth=8",
            encode(&ack)
        ))
        .await?;
    print_audit(&ack, &lineage);
    let prov = auditor.get(&format!("/v1/prov/{}", encode(&ack))).await?;
    let count_of = |section: &str| {
        prov.get(section)
            .and_then(Value::as_object)
            .map_or(0, |m| m.len())
    };
    println!(
        "\nW3C PROV-JSON (GET /v1/prov/{ack}): {} entities, {} activities, {} agents, {} derivations",
        count_of("entity"),
        count_of("activity"),
        count_of("agent"),
        count_of("wasDerivedFrom")
    );
    Ok(())
}

fn short(tx: &Value) -> String {
    let tx = tx.as_str().unwrap_or("?");
    format!("{}…", &tx[..tx.len().min(12)])
}

/// The incident audit: the lineage of the final command, upward, in the auditor's terms.
fn print_audit(root: &str, lineage: &Value) {
    println!("\nIncident audit: how did {root} come about? (GET /v1/lineage/{root}?direction=up)");
    let empty = serde_json::Map::new();
    let nodes = lineage["nodes"].as_object().unwrap_or(&empty);
    let relations: Vec<&Value> = lineage["relations"]
        .as_array()
        .map(|r| r.iter().collect())
        .unwrap_or_default();
    let related = |rel: &str, from: &str| -> Vec<String> {
        let mut to: Vec<String> = relations
            .iter()
            .filter(|r| r["relation"] == rel && r["from"] == from)
            .filter_map(|r| r["to"].as_str().map(str::to_owned))
            .collect();
        // One relation per recording transaction: name each target once.
        to.sort();
        to.dedup();
        to
    };
    let of_type = |t: &'static str| {
        nodes
            .iter()
            .filter(move |(_, n)| n["node"] == "entity" && n["entity"]["type"] == t)
    };
    println!("Data:");
    for (id, n) in of_type("data") {
        let e = &n["entity"];
        let from = related("wasDerivedFrom", id);
        let from = if from.is_empty() {
            String::new()
        } else {
            format!(", derived from {}", from.join(" + "))
        };
        let host = e["host_device"]
            .as_str()
            .map(|h| format!(" on {h}"))
            .unwrap_or_default();
        println!(
            "  {id:<22} {:<26} generated by {}{host}{from}; recorded by {} in tx {}",
            e["kind"].as_str().unwrap_or("?"),
            e["generated_by"].as_str().unwrap_or("?"),
            e["recorded"]["by"]["id"].as_str().unwrap_or("?"),
            short(&e["recorded"]["tx_id"])
        );
    }
    println!("Activities:");
    for (id, n) in of_type("container") {
        let e = &n["entity"];
        println!(
            "  {id:<22} container {} ({}), publisher {}, placed on {} by {} in tx {}, used {} under {}",
            e["image"].as_str().unwrap_or("?"),
            e["digest"].as_str().map(|d| &d[..d.len().min(19)]).unwrap_or("?"),
            e["publisher"].as_str().unwrap_or("none"),
            related("placedOn", id).join(", "),
            e["placement"]["stamp"]["by"]["id"].as_str().unwrap_or("?"),
            short(&e["placement"]["stamp"]["tx_id"]),
            related("used", id).join(" + "),
            related("underContract", id).join(", ")
        );
    }
    for (id, _) in of_type("device") {
        let used = related("used", id);
        if !used.is_empty() {
            println!(
                "  {id:<22} device, used {} under {}",
                used.join(" + "),
                related("underContract", id).join(", ")
            );
        }
    }
    println!("Devices:");
    for (id, n) in of_type("device") {
        let e = &n["entity"];
        println!(
            "  {id:<22} {:<10} org {:<8} certificate {}, joined in tx {} (orchestrated by {})",
            e["kind"].as_str().unwrap_or("?"),
            e["org"].as_str().unwrap_or("?"),
            e["certificate"]["subject"].as_str().unwrap_or("?"),
            short(&e["joined"]["tx_id"]),
            e["joined"]["by"]["id"].as_str().unwrap_or("?")
        );
    }
    println!("Contracts:");
    for (id, n) in nodes.iter().filter(|(_, n)| n["node"] == "contract") {
        let c = &n["contract"];
        let uses: Vec<String> = c["uses"]
            .as_array()
            .map(|u| {
                u.iter()
                    .map(|u| {
                        format!(
                            "{} from {}",
                            u["kind"].as_str().unwrap_or("?"),
                            u["source"].as_str().unwrap_or("any")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "  {id:<22} contractor {}, uses {}, state {}, defined by {} in tx {}",
            c["contractor"].as_str().unwrap_or("?"),
            uses.join(", "),
            c["state"].as_str().unwrap_or("?"),
            c["defined"]["by"]["id"].as_str().unwrap_or("?"),
            short(&c["defined"]["tx_id"])
        );
    }
    println!("Agents (who signed):");
    for (id, n) in nodes.iter().filter(|(_, n)| n["node"] == "agent") {
        println!(
            "  {id:<32} role {}",
            n["agent"]["role"].as_str().unwrap_or("none")
        );
    }
    println!("Relations ({}):", relations.len());
    for r in &relations {
        println!(
            "  {} {} {}  (tx {})",
            r["from"].as_str().unwrap_or("?"),
            r["relation"].as_str().unwrap_or("?"),
            r["to"].as_str().unwrap_or("?"),
            short(&r["tx_id"])
        );
    }
}
