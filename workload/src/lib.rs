//! The workload TOM runs in its test containers, in the roles of the paper's scenarios.
//!
//! * **sensor**: produces readings, keeps their bytes off-chain in the data directory, signs
//!   their hash with its key and records them through the gateway (`POST /v1/data`, PROV-DATA).
//! * **derive** (the collector and the analyser): waits for its inputs, checks each one's bytes
//!   against the hash on the ledger, uses each under its contract (`POST /v1/executions`, EXEC)
//!   and records the data it generates from them, signed, with `derived_from` naming the inputs.
//! * **actuate** (the actuator): receives a command (a data item), checks it, uses it under its
//!   contract and acknowledges it with signed acknowledgement data.
//!
//! The workload talks to the gateway over plain HTTP/1.1 on the host's loopback address (the
//! service is on the `host` network) with a bearer token; [`http`] is a deliberately small
//! blocking client so the image stays one static-ish binary with a quick build. It never talks
//! to the ledger or to Docker directly, and it never records anything it has not signed.

pub mod http;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use p256::ecdsa::signature::Signer;
use serde_json::{json, Value};

/// How a workload reaches the gateway and where its bytes and key live.
#[derive(Debug, Clone)]
pub struct Env {
    pub gateway: String,
    pub token: String,
    pub data_dir: PathBuf,
    pub key: p256::ecdsa::SigningKey,
    /// The generating activity this workload signs for (a container id, or a device id for a
    /// device's own software).
    pub activity: String,
    /// The channel (Fabric) or ledger name (embedded) its claims are meant for.
    pub ledger: String,
    /// How long to wait for inputs before giving up.
    pub wait: Duration,
}

/// Load a PKCS#8 PEM P-256 private key.
pub fn load_key(path: &Path) -> Result<p256::ecdsa::SigningKey> {
    use p256::pkcs8::DecodePrivateKey;
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    p256::ecdsa::SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| anyhow!("key file {} is not a PKCS#8 P-256 key: {e}", path.display()))
}

/// `sha256:<hex>` of `bytes`, the form the ledger records.
pub fn hash(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
    )
}

/// DER ECDSA P-256/SHA-256 signature (low S) over `message`.
pub fn sign(key: &p256::ecdsa::SigningKey, message: &[u8]) -> Vec<u8> {
    let signature: p256::ecdsa::Signature = key.sign(message);
    let signature = signature.normalize_s().unwrap_or(signature);
    signature.to_der().as_bytes().to_vec()
}

impl Env {
    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let response = http::request(&self.gateway, "POST", path, Some(&self.token), Some(body))?;
        if !(200..300).contains(&response.status) {
            bail!(
                "POST {path} answered {}: {}",
                response.status,
                response.body
            );
        }
        serde_json::from_str(&response.body)
            .with_context(|| format!("POST {path} answered non-JSON: {}", response.body))
    }

    /// The entity's JSON, or `None` while the ledger does not have it.
    fn entity(&self, id: &str) -> Result<Option<Value>> {
        let response = http::request(
            &self.gateway,
            "GET",
            &format!("/v1/entities/{id}"),
            Some(&self.token),
            None,
        )?;
        match response.status {
            200 => Ok(Some(serde_json::from_str(&response.body)?)),
            404 => Ok(None),
            status => bail!("GET /v1/entities/{id} answered {status}: {}", response.body),
        }
    }

    fn data_path(&self, data_id: &str) -> PathBuf {
        self.data_dir.join(format!("{data_id}.json"))
    }

    /// Keep `bytes` off-chain and record them as `data_id`, signed by this workload.
    pub fn record(
        &self,
        data_id: &str,
        kind: &str,
        bytes: &[u8],
        derived_from: &[String],
    ) -> Result<String> {
        let path = self.data_path(data_id);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        let hash = hash(bytes);
        let request = tom_contract::requests::RecordData {
            data_id: data_id.to_owned(),
            kind: kind.to_owned(),
            hash: hash.clone(),
            size: bytes.len() as u64,
            location: format!("file://{}", path.display()),
            generated_by: self.activity.clone(),
            derived_from: derived_from.to_vec(),
            claim: Default::default(),
        }
        .sign(&self.ledger, "", |message| sign(&self.key, message))
        .map_err(|e| anyhow!("signing the claim for {data_id}: {e}"))?;
        let committed = self.post("/v1/data", &serde_json::to_value(&request)?)?;
        println!(
            "recorded {data_id} ({kind}, {hash}) in tx {}",
            committed["tx_id"].as_str().unwrap_or("?")
        );
        Ok(committed["tx_id"].as_str().unwrap_or_default().to_owned())
    }

    /// Wait until `data_id` is on the ledger and its bytes are here, and check them as the
    /// paper's receiver does: the sender's identity (the generator's signed claim verifies with
    /// the certificate the ledger holds for it) and the data's integrity (the bytes hash to what
    /// the claim and the ledger say). The workload never uses data that fails either check, and
    /// does not take the gateway's word for the signature.
    pub fn fetch(&self, data_id: &str) -> Result<Vec<u8>> {
        let deadline = Instant::now() + self.wait;
        loop {
            if let (Some(entity), Ok(bytes)) = (
                self.entity(data_id)?,
                std::fs::read(self.data_path(data_id)),
            ) {
                let recorded = entity["hash"].as_str().unwrap_or_default();
                let actual = hash(&bytes);
                if recorded != actual {
                    bail!("data {data_id}: the bytes in {} hash to {actual}, but the ledger records {recorded}", self.data_path(data_id).display());
                }
                let generator_id = entity["generated_by"].as_str().unwrap_or_default();
                let generator = self.entity(generator_id)?.with_context(|| {
                    format!("data {data_id}: generator {generator_id} is not on the ledger")
                })?;
                check_claim(&entity, &generator, &bytes, &self.ledger)
                    .with_context(|| format!("data {data_id} from {generator_id}"))?;
                return Ok(bytes);
            }
            if Instant::now() >= deadline {
                bail!(
                    "data {data_id} did not appear (ledger and {}) within {} s",
                    self.data_dir.display(),
                    self.wait.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Use `data_id` under `contract` (the EXEC).
    pub fn exec(&self, contract: &str, data_id: &str) -> Result<String> {
        let request = tom_contract::requests::ExecContract {
            contract_id: contract.to_owned(),
            data_id: data_id.to_owned(),
        };
        let committed = self.post("/v1/executions", &serde_json::to_value(&request)?)?;
        println!(
            "used {data_id} under contract {contract} in tx {}",
            committed["tx_id"].as_str().unwrap_or("?")
        );
        Ok(committed["tx_id"].as_str().unwrap_or_default().to_owned())
    }
}

/// Check a data item as its receiver: `data` and `generator` are the entities the ledger holds,
/// `bytes` what arrived off-chain. The claim must be a DSSE envelope signed by the generator's
/// certificate key, for this `ledger`, naming this data id, these bytes and this generator.
pub fn check_claim(data: &Value, generator: &Value, bytes: &[u8], ledger: &str) -> Result<()> {
    use tom_contract::claims::{DataGeneration, Envelope, Statement, DATA_GENERATION_PREDICATE};
    let envelope: Envelope = serde_json::from_value(data["claim"].clone())
        .context("the ledger holds no signed claim for it")?;
    let pem = generator["certificate"]["pem"]
        .as_str()
        .context("its generator has no certificate on the ledger")?;
    let certificate = tom_contract::identity::Certificate::from_pem(pem)
        .map_err(|e| anyhow!("generator certificate: {e}"))?;
    let statement: Statement<DataGeneration> = envelope
        .open(DATA_GENERATION_PREDICATE, |message, signature| {
            certificate.verify(message, signature)
        })
        .map_err(|e| anyhow!("claim: {e}"))?;
    let digest = hash(bytes);
    let subject = statement
        .subject
        .first()
        .context("claim names no subject")?;
    let checks = [
        (
            subject.name == data["id"].as_str().unwrap_or_default(),
            "names another data id",
        ),
        (
            subject.digest.get("sha256").map(|h| format!("sha256:{h}")) == Some(digest),
            "was signed for other bytes",
        ),
        (
            statement.predicate.generated_by == generator["id"].as_str().unwrap_or_default(),
            "names another generator",
        ),
        (
            statement.predicate.ledger == ledger,
            "was made for another ledger",
        ),
    ];
    if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
        bail!("the generator's signed claim {what}");
    }
    Ok(())
}

/// A sensor's readings: `count` items `<prefix>-<n>` of `kind`.
pub fn sensor(
    env: &Env,
    kind: &str,
    prefix: &str,
    count: u32,
    interval: Duration,
) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for n in 1..=count {
        let data_id = if count == 1 {
            prefix.to_owned()
        } else {
            format!("{prefix}-{n}")
        };
        // A deterministic "measurement": enough to give every reading distinct bytes.
        let seed = ring::digest::digest(&ring::digest::SHA256, data_id.as_bytes());
        let value = u16::from_be_bytes([seed.as_ref()[0], seed.as_ref()[1]]) % 100;
        let reading = json!({ "sensor": env.activity, "kind": kind, "seq": n, "value": value });
        env.record(&data_id, kind, reading.to_string().as_bytes(), &[])?;
        ids.push(data_id);
        if n < count {
            std::thread::sleep(interval);
        }
    }
    Ok(ids)
}

/// A collector or analyser: use every input under `contract`, then record what it derives.
pub fn derive(
    env: &Env,
    contract: &str,
    inputs: &[String],
    kind: &str,
    data_id: &str,
) -> Result<String> {
    let mut used = Vec::new();
    for input in inputs {
        let bytes = env.fetch(input)?;
        env.exec(contract, input)?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        used.push(json!({ "id": input, "hash": hash(&bytes), "content": value }));
    }
    let output =
        json!({ "generated_by": env.activity, "kind": kind, "contract": contract, "inputs": used });
    env.record(data_id, kind, output.to_string().as_bytes(), inputs)?;
    Ok(data_id.to_owned())
}

/// An actuator: receive the command, use it under `contract`, acknowledge it.
pub fn actuate(env: &Env, contract: &str, command: &str, ack_id: &str) -> Result<String> {
    let bytes = env.fetch(command)?;
    env.exec(contract, command)?;
    let ack = json!({ "actuator": env.activity, "command": command, "command_hash": hash(&bytes), "applied": true });
    env.record(
        ack_id,
        "acknowledgement",
        ack.to_string().as_bytes(),
        &[command.to_owned()],
    )?;
    Ok(ack_id.to_owned())
}

/// Mark the work done: `<data-dir>/<activity>.done` lists what was produced (tests wait on it).
pub fn done(env: &Env, produced: &[String]) -> Result<()> {
    let path = env.data_dir.join(format!("{}.done", env.activity));
    std::fs::write(
        &path,
        json!({ "activity": env.activity, "produced": produced }).to_string(),
    )
    .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_verify_with_the_workload_key_and_have_low_s() {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePrivateKey;
        let id = tom_fixtures::identity("org1", "collector");
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(id.key_pkcs8_pem).unwrap();
        assert_eq!(
            hash(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let request = tom_contract::requests::RecordData {
            data_id: "r1".into(),
            kind: "reading".into(),
            hash: hash(b"reading"),
            size: 7,
            location: "file:///r1".into(),
            generated_by: "collector".into(),
            derived_from: vec![],
            claim: Default::default(),
        }
        .sign("tom", "", |m| sign(&key, m))
        .unwrap();
        let statement: tom_contract::claims::Statement<tom_contract::claims::DataGeneration> =
            request
                .claim
                .open(
                    tom_contract::claims::DATA_GENERATION_PREDICATE,
                    |message, der| {
                        let signature = p256::ecdsa::Signature::from_der(der).unwrap();
                        assert!(signature.normalize_s().is_none(), "low S");
                        key.verifying_key().verify(message, &signature).is_ok()
                    },
                )
                .unwrap();
        assert_eq!(statement, request.statement("tom"));
    }

    /// The receiver's check, against entities shaped as the ledger returns them.
    #[test]
    fn receivers_check_the_senders_claim_and_the_bytes() {
        use p256::pkcs8::DecodePrivateKey;
        let light = tom_fixtures::identity("org1", "traffic-light-1");
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(light.key_pkcs8_pem).unwrap();
        let bytes = b"count=7";
        let claimed = |signer: &p256::ecdsa::SigningKey, bytes: &[u8]| {
            tom_contract::requests::RecordData {
                data_id: "c1".into(),
                kind: "count".into(),
                hash: hash(bytes),
                size: bytes.len() as u64,
                location: "file:///c1".into(),
                generated_by: "tl-1".into(),
                derived_from: vec![],
                claim: Default::default(),
            }
            .sign("tom", "", |m| sign(signer, m))
            .unwrap()
        };
        let data = |request: &tom_contract::requests::RecordData| json!({ "id": "c1", "generated_by": "tl-1", "hash": request.hash, "claim": request.claim });
        let generator = json!({ "id": "tl-1", "certificate": { "pem": light.cert_pem } });
        let good = claimed(&key, bytes);
        check_claim(&data(&good), &generator, bytes, "tom").unwrap();
        let err = |r: Result<()>| r.unwrap_err().to_string();
        assert!(
            err(check_claim(&data(&good), &generator, b"count=8", "tom")).contains("other bytes")
        );
        assert!(
            err(check_claim(&data(&good), &generator, bytes, "other")).contains("another ledger")
        );
        let other = tom_fixtures::identity("org1", "edge-node-1");
        let other_key = p256::ecdsa::SigningKey::from_pkcs8_pem(other.key_pkcs8_pem).unwrap();
        let forged = claimed(&other_key, bytes);
        assert!(
            err(check_claim(&data(&forged), &generator, bytes, "tom")).contains("does not verify")
        );
        let unsigned = json!({ "id": "c1", "generated_by": "tl-1" });
        assert!(err(check_claim(&unsigned, &generator, bytes, "tom")).contains("no signed claim"));
    }
}
