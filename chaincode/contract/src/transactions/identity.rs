//! Identity: entities join and leave (Table II's join/leave device and container rows), each
//! with its IDENTITY(object, id-proof) and PROV-ID-create or PROV-ID-delete record.

use super::{check_id, check_sha256, check_text, decode_signature, parse_certificate};
use crate::claims::{self, Envelope, IdentityProof, Statement};
use crate::context::Ctx;
use crate::error::ContractError;
use crate::guards::{self, Guards};
use crate::identity::{check_chain, Certificate};
use crate::keys;
use crate::model::*;
use crate::requests;
use crate::transaction::{Callers, Kind, Transaction};

/// Check a proof of key possession: `proof` must be a DSSE envelope signed by `certificate`'s
/// key whose statement is exactly `expected`, and its nonce must never have been used.
fn check_possession(
    ctx: &Ctx,
    certificate: &Certificate,
    proof: &Envelope,
    expected: &Statement<IdentityProof>,
) -> Result<String, ContractError> {
    let f = ctx.function;
    let entity = format!(
        "{} {}",
        expected.predicate.entity_type,
        expected
            .subject
            .first()
            .map(|s| s.name.as_str())
            .unwrap_or_default()
    );
    let signed: Statement<IdentityProof> = proof
        .open(claims::IDENTITY_PROOF_PREDICATE, |message, signature| {
            certificate.verify(message, signature)
        })
        .map_err(|e| {
            ContractError::proof(
                f,
                format!(
                    "id-proof for {entity} does not verify with the key of {}: {e}",
                    certificate.info.subject
                ),
            )
        })?;
    if let Some(field) = claims::mismatch(&signed, expected) {
        // The usual mistake is the digest of the PEM text: say which digest was expected.
        let field = match (signed.subject.as_slice(), expected.subject.as_slice()) {
            ([s], [e]) if field.starts_with("subject") && s.name == e.name => format!(
                "subject[0].digest differs: signed {:?}, but the certificate's SHA-256 is {} (the \
                 digest of its DER encoding, as `openssl x509 -outform DER | sha256sum` prints \
                 it, not of its PEM text)",
                s.digest, certificate.info.sha256
            ),
            _ => field,
        };
        return Err(ContractError::proof(
            f,
            format!("id-proof for {entity} was signed for another claim: {field}"),
        ));
    }
    let nonce = &expected.predicate.nonce;
    let nonce_key = keys::key(keys::NONCE, &[nonce])?;
    if let Some(used) = ctx.stub.get_state(&nonce_key)? {
        return Err(ContractError::proof(
            f,
            format!(
                "nonce {nonce:?} was used already (tx {}); an id-proof is never accepted twice",
                String::from_utf8_lossy(&used)
            ),
        ));
    }
    Ok(nonce_key)
}

/// A certificate identifies one entity for ever: refuse one bound to another entity already.
fn check_identity_binding(
    ctx: &Ctx,
    certificate: &Certificate,
    entity_id: &str,
) -> Result<String, ContractError> {
    let key = keys::key(keys::IDENTITY_BINDING, &[&certificate.info.sha256])?;
    if let Some(bound) = ctx.stub.get_state(&key)? {
        let bound = String::from_utf8_lossy(&bound).into_owned();
        if bound != entity_id {
            return Err(ContractError::AlreadyExists {
                kind: "identity",
                id: certificate.info.sha256.clone(),
                detail: format!(
                    "certificate {} identifies {bound} already and cannot identify {entity_id}",
                    certificate.info.subject
                ),
            });
        }
    }
    Ok(key)
}

fn registered_org(ctx: &Ctx, msp_id: &str) -> Result<Org, ContractError> {
    ctx.org(msp_id)?.ok_or_else(|| ContractError::NotFound {
        kind: "organisation",
        id: msp_id.to_owned(),
    })
}

// --- devices ----------------------------------------------------------------------------------

impl Transaction for requests::IdentifyDevice {
    const NAME: &'static str = "IdentifyDevice";
    const KIND: Kind = Kind::Submit;
    const RECORD: Option<RecordKind> = Some(RecordKind::ProvIdCreate);
    const CALLERS: Callers = Callers::Members(&[Role::Orchestrator]);
    const DESCRIPTION: &'static str =
        "device joins: certificate chain + signed nonce; writes IDENTITY and PROV-ID-create";
    type Response = LedgerRecord;

    fn execute(self, ctx: &mut Ctx) -> Result<LedgerRecord, ContractError> {
        let req = self;
        let f = ctx.function;
        let caller = ctx.authorise::<Self>()?;
        check_id(f, "device_id", &req.device_id)?;
        check_id(f, "kind", &req.kind)?;
        check_text(f, "nonce", &req.nonce)?;
        if let Some(node) = &req.node_id {
            check_id(f, "node_id", node)?;
        }
        let org = registered_org(ctx, &req.org)?;
        ctx.acts_for(&caller, &req.org, "identify devices")?;
        let certificate = parse_certificate(f, "certificate", &req.certificate)?;
        check_chain(&certificate, &org.ca_certificates_pem, ctx.now())
            .map_err(|e| ContractError::proof(f, e))?;
        if certificate.role().map_err(|e| ContractError::proof(f, e))? != Some(Role::Device) {
            return Err(ContractError::proof(
                f,
                format!(
                    "device certificate {} does not carry tom.role=device",
                    certificate.info.subject
                ),
            ));
        }
        let expected = req.statement(&certificate.info.sha256, ctx.stub.channel_id());
        let nonce_key = check_possession(ctx, &certificate, &req.proof, &expected)?;
        let binding_key = check_identity_binding(ctx, &certificate, &req.device_id)?;
        let previous = ctx.entity(&req.device_id)?;
        Guards::new()
            .check(guards::may_join(
                &req.device_id,
                EntityType::Device,
                &req.org,
                previous.as_ref(),
            ))
            .finish("join device")?;
        ctx.stub.put_state(&nonce_key, ctx.tx_id().into_bytes())?;
        ctx.stub
            .put_state(&binding_key, req.device_id.clone().into_bytes())?;
        let device = Device {
            id: req.device_id.clone(),
            org: req.org.clone(),
            kind: req.kind.clone(),
            certificate: certificate.info.clone(),
            proof_nonce: req.nonce.clone(),
            proof: req.proof,
            state: Lifecycle::Joined,
            joined: ctx.stamp(&caller),
            left: None,
            node_id: req.node_id.clone(),
            availability: None,
        };
        ctx.put_entity(&Entity::Device(device))?;
        let body = RecordBody::Identify {
            entity_type: EntityType::Device,
            entity: req.device_id.clone(),
            org: req.org,
            proof: format!("x509:{} + signed nonce", certificate.info.sha256),
            node_id: req.node_id,
        };
        ctx.record::<Self>(&caller, vec![req.device_id], body)
    }
}

impl Transaction for requests::TerminateDevice {
    const NAME: &'static str = "TerminateDevice";
    const KIND: Kind = Kind::Submit;
    const RECORD: Option<RecordKind> = Some(RecordKind::ProvIdDelete);
    const CALLERS: Callers = Callers::Members(&[Role::Orchestrator]);
    const DESCRIPTION: &'static str =
        "device leaves (guard joined(device), no containers placed); PROV-ID-delete";
    type Response = LedgerRecord;

    fn execute(self, ctx: &mut Ctx) -> Result<LedgerRecord, ContractError> {
        let req = self.0;
        let f = ctx.function;
        let caller = ctx.authorise::<Self>()?;
        check_id(f, "id", &req.id)?;
        if let Some(reason) = &req.reason {
            check_text(f, "reason", reason)?;
        }
        let entity = ctx.entity(&req.id)?;
        if let Some(Entity::Device(d)) = &entity {
            ctx.acts_for(&caller, &d.org, "terminate devices")?;
        }
        let mut guards = Guards::new();
        guards.check(guards::joined(&req.id, EntityType::Device, entity.as_ref()));
        let placed: Vec<String> = ctx
            .scan(keys::PLACED_ON, &[&req.id])?
            .into_iter()
            .filter_map(|(key, _)| {
                crate::ledger::split_composite_key(&key)
                    .and_then(|(_, attrs)| attrs.get(1).map(|s| (*s).to_owned()))
            })
            .collect();
        guards.check(guards::no_containers_placed(&req.id, placed));
        guards.finish("leave device")?;
        let Some(Entity::Device(mut device)) = entity else {
            return Err(ContractError::NotFound {
                kind: "device",
                id: req.id,
            });
        };
        device.state = Lifecycle::Left;
        device.left = Some(Departure {
            stamp: ctx.stamp(&caller),
            reason: req.reason.clone(),
        });
        ctx.put_entity(&Entity::Device(device))?;
        let body = RecordBody::Terminate {
            entity_type: EntityType::Device,
            entity: req.id.clone(),
            reason: req.reason,
            location: None,
        };
        ctx.record::<Self>(&caller, vec![req.id], body)
    }
}

// --- containers -------------------------------------------------------------------------------

impl Transaction for requests::IdentifyContainer {
    const NAME: &'static str = "IdentifyContainer";
    const KIND: Kind = Kind::Submit;
    const RECORD: Option<RecordKind> = Some(RecordKind::ProvIdCreate);
    const CALLERS: Callers = Callers::Members(&[Role::Orchestrator]);
    const DESCRIPTION: &'static str =
        "container joins with image digest (and publisher signature); PROV-ID-create";
    type Response = LedgerRecord;

    fn execute(self, ctx: &mut Ctx) -> Result<LedgerRecord, ContractError> {
        let req = self;
        let f = ctx.function;
        let caller = ctx.authorise::<Self>()?;
        check_id(f, "container_id", &req.container_id)?;
        check_text(f, "image", &req.image)?;
        check_sha256(f, "digest", &req.digest)?;
        let org = registered_org(ctx, &req.org)?;
        ctx.acts_for(&caller, &req.org, "identify containers")?;
        let publisher = match &req.publisher_signature {
            Some(sig) => {
                let pem = org.policy.publishers.get(&sig.publisher).ok_or_else(|| {
                    ContractError::proof(
                        f,
                        format!(
                            "publisher {:?} is not trusted by organisation {}",
                            sig.publisher, org.msp_id
                        ),
                    )
                })?;
                let cert = parse_certificate(f, "publisher certificate", pem)?;
                let signature =
                    decode_signature(f, "publisher_signature.signature", &sig.signature)?;
                if !cert.verify(&requests::image_digest_message(&req.digest), &signature) {
                    return Err(ContractError::proof(
                        f,
                        format!(
                            "publisher {}'s signature over {} does not verify",
                            sig.publisher, req.digest
                        ),
                    ));
                }
                Some(sig.publisher.clone())
            }
            None if org.policy.require_image_signature => {
                return Err(ContractError::proof(
                    f,
                    format!(
                        "organisation {} requires a publisher signature over the image digest",
                        org.msp_id
                    ),
                ));
            }
            None => None,
        };
        // A workload certificate joins only with proof that its key is held (as a device's does),
        // chained to the container organisation's CA, and bound to no other entity.
        let workload = match (&req.certificate, &req.nonce, &req.proof) {
            (Some(pem), Some(nonce), Some(proof)) => {
                check_text(f, "nonce", nonce)?;
                let cert = parse_certificate(f, "certificate", pem)?;
                check_chain(&cert, &org.ca_certificates_pem, ctx.now())
                    .map_err(|e| ContractError::proof(f, e))?;
                if cert.role().map_err(|e| ContractError::proof(f, e))? != Some(Role::Device) {
                    return Err(ContractError::proof(
                        f,
                        format!(
                            "workload certificate {} does not carry tom.role=device",
                            cert.info.subject
                        ),
                    ));
                }
                let expected = req.statement(&cert.info.sha256, nonce, ctx.stub.channel_id());
                let nonce_key = check_possession(ctx, &cert, proof, &expected)?;
                let binding_key = check_identity_binding(ctx, &cert, &req.container_id)?;
                Some((cert.info, proof.clone(), nonce_key, binding_key))
            }
            (None, None, None) => None,
            (Some(_), _, _) => {
                return Err(ContractError::bad(
                    f,
                    "a workload certificate needs its proof of possession: nonce and proof (a DSSE envelope signed by the workload key)",
                ))
            }
            (None, _, _) => {
                return Err(ContractError::bad(
                    f,
                    "nonce and proof prove a workload certificate; give certificate with them",
                ))
            }
        };
        let previous = ctx.entity(&req.container_id)?;
        Guards::new()
            .check(guards::may_join(
                &req.container_id,
                EntityType::Container,
                &req.org,
                previous.as_ref(),
            ))
            .finish("join container")?;
        let mut proof = match &publisher {
            Some(p) => format!("image {} signed by publisher {p}", req.digest),
            None => format!("image {}", req.digest),
        };
        let (certificate, workload_proof) = match workload {
            Some((certificate, envelope, nonce_key, binding_key)) => {
                ctx.stub.put_state(&nonce_key, ctx.tx_id().into_bytes())?;
                ctx.stub
                    .put_state(&binding_key, req.container_id.clone().into_bytes())?;
                proof.push_str(&format!(" + x509:{} + signed nonce", certificate.sha256));
                (Some(certificate), Some(envelope))
            }
            None => (None, None),
        };
        let container = Container {
            id: req.container_id.clone(),
            org: req.org.clone(),
            image: req.image,
            digest: req.digest,
            publisher,
            certificate,
            proof: workload_proof,
            state: Lifecycle::Joined,
            joined: ctx.stamp(&caller),
            left: None,
            placement: None,
            last_failed_placement: None,
        };
        ctx.put_entity(&Entity::Container(container))?;
        let body = RecordBody::Identify {
            entity_type: EntityType::Container,
            entity: req.container_id.clone(),
            org: req.org,
            proof,
            node_id: None,
        };
        ctx.record::<Self>(&caller, vec![req.container_id], body)
    }
}

impl Transaction for requests::TerminateContainer {
    const NAME: &'static str = "TerminateContainer";
    const KIND: Kind = Kind::Submit;
    const RECORD: Option<RecordKind> = Some(RecordKind::ProvIdDelete);
    const CALLERS: Callers = Callers::Members(&[Role::Orchestrator]);
    const DESCRIPTION: &'static str = "container leaves (guard joined(container)); PROV-ID-delete";
    type Response = LedgerRecord;

    fn execute(self, ctx: &mut Ctx) -> Result<LedgerRecord, ContractError> {
        let req = self.0;
        let f = ctx.function;
        let caller = ctx.authorise::<Self>()?;
        check_id(f, "id", &req.id)?;
        if let Some(reason) = &req.reason {
            check_text(f, "reason", reason)?;
        }
        let entity = ctx.entity(&req.id)?;
        if let Some(Entity::Container(c)) = &entity {
            ctx.acts_for(&caller, &c.org, "terminate containers")?;
        }
        Guards::new()
            .check(guards::joined(
                &req.id,
                EntityType::Container,
                entity.as_ref(),
            ))
            .finish("leave container")?;
        let Some(Entity::Container(mut container)) = entity else {
            return Err(ContractError::NotFound {
                kind: "container",
                id: req.id,
            });
        };
        let location = container.placement.as_ref().map(|p| p.device.clone());
        if let Some(device) = &location {
            ctx.delete_index(keys::PLACED_ON, &[device, &req.id])?;
        }
        container.state = Lifecycle::Left;
        container.left = Some(Departure {
            stamp: ctx.stamp(&caller),
            reason: req.reason.clone(),
        });
        ctx.put_entity(&Entity::Container(container))?;
        let mut subjects = vec![req.id.clone()];
        subjects.extend(location.clone());
        let body = RecordBody::Terminate {
            entity_type: EntityType::Container,
            entity: req.id,
            reason: req.reason,
            location,
        };
        ctx.record::<Self>(&caller, subjects, body)
    }
}
