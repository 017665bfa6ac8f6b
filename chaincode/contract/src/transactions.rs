//! The submit transactions: the paper's state machine (Table II) plus organisation
//! registration, placement, processing contracts and the orchestrator's outcome reports.
//!
//! Each function authenticates the creator, validates its argument, evaluates the transition's
//! guards against committed state, and only then writes: the entity, its indexes, and exactly one
//! ledger record (which also emits the chaincode event). A refused transition writes nothing.

use base64::Engine;

use crate::claims::{self, Envelope, IdentityProof, Statement};
use crate::context::{Caller, Ctx};
use crate::error::ContractError;
use crate::guards::{self, GuardFailure, Guards};
use crate::identity::{check_chain, Certificate};
use crate::keys;
use crate::model::*;
use crate::requests::{self, GenerateClause};

const MAX_TEXT_LEN: usize = crate::ids::MAX_TEXT;

/// Ids are used inside composite keys, URLs and PROV qualified names: the grammar of
/// [`crate::ids::ID`].
pub(crate) fn check_id(function: &'static str, field: &str, id: &str) -> Result<(), ContractError> {
    crate::ids::ID
        .check(field, id)
        .map_err(|e| ContractError::bad(function, e))
}

/// Free text: [`crate::ids::check_text`] with the default bound.
fn check_text(function: &'static str, field: &str, text: &str) -> Result<(), ContractError> {
    crate::ids::check_text(field, text, MAX_TEXT_LEN).map_err(|e| ContractError::bad(function, e))
}

fn check_sha256(function: &'static str, field: &str, value: &str) -> Result<(), ContractError> {
    let ok = value.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(ContractError::bad(
            function,
            format!("{field} {value:?} is not of the form sha256:<64 lowercase hex digits>"),
        ))
    }
}

fn decode_signature(
    function: &'static str,
    field: &str,
    text: &str,
) -> Result<Vec<u8>, ContractError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| ContractError::bad(function, format!("{field} is not base64: {e}")))
}

fn parse_certificate(
    function: &'static str,
    field: &str,
    pem: &str,
) -> Result<Certificate, ContractError> {
    Certificate::from_pem(pem).map_err(|e| ContractError::bad(function, format!("{field}: {e}")))
}

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

/// Who may submit a data item's PROV-DATA record: the generator itself (its own identity, the
/// key that signs the claim) or an orchestrator acting for the generator's organisation.
fn check_data_submitter(
    ctx: &Ctx,
    caller: &Caller,
    generator: &Entity,
    signer: &CertificateInfo,
) -> Result<(), ContractError> {
    match caller.role {
        Some(Role::Orchestrator) => ctx.acts_for(caller, generator.org(), "record data of generators"),
        _ if caller.agent.certificate_sha256 == signer.sha256 => Ok(()),
        _ => Err(ContractError::denied(
            ctx.function,
            format!(
                "{} is not {}'s identity; only the generator itself or an orchestrator acting for {} may record its data",
                caller.agent.id,
                generator.id(),
                generator.org()
            ),
        )),
    }
}

/// Data of organisation `owner` (named `what`) may reach activity `user` only when `owner` is
/// the activity's organisation or names it in `shares_data_with`.
fn check_shares_data(
    ctx: &Ctx,
    owner: &str,
    what: &str,
    user: &Entity,
) -> Result<(), ContractError> {
    if ctx.consents(owner, user.org(), |p| &p.shares_data_with)? {
        return Ok(());
    }
    Err(ContractError::denied(
        ctx.function,
        format!(
            "{what} belongs to {owner}, which does not share data with {} (activity {}): {owner}'s policy does not name {} in shares_data_with",
            user.org(),
            user.id(),
            user.org()
        ),
    ))
}

fn registered_org(ctx: &Ctx, msp_id: &str) -> Result<Org, ContractError> {
    ctx.org(msp_id)?.ok_or_else(|| ContractError::NotFound {
        kind: "organisation",
        id: msp_id.to_owned(),
    })
}

/// The id must be free in the entity namespace (ids are never reused, even after leaving,
/// except by the same entity type rejoining, which the callers decide).
fn taken(id: &str, entity: &Entity) -> ContractError {
    ContractError::AlreadyExists {
        kind: "entity",
        id: id.to_owned(),
        detail: format!(
            "a {} that is {}",
            entity.entity_type(),
            entity.state_description()
        ),
    }
}

// --- RegisterOrg ------------------------------------------------------------------------------

pub fn register_org(
    ctx: &mut Ctx,
    req: requests::RegisterOrg,
) -> Result<LedgerRecord, ContractError> {
    let f = ctx.function;
    let caller = ctx.caller()?;
    if caller.role != Some(Role::Admin) {
        return Err(ContractError::denied(
            f,
            format!(
                "{} is not an admin (tom.role=admin needed)",
                caller.agent.id
            ),
        ));
    }
    check_id(f, "msp_id", &req.msp_id)?;
    if caller.agent.msp_id != req.msp_id {
        return Err(ContractError::denied(
            f,
            format!(
                "an admin of {} cannot register organisation {}",
                caller.agent.msp_id, req.msp_id
            ),
        ));
    }
    if req.ca_certificates.is_empty() {
        return Err(ContractError::bad(
            f,
            "ca_certificates must name at least one CA certificate",
        ));
    }
    for (i, pem) in req.ca_certificates.iter().enumerate() {
        let ca = parse_certificate(f, &format!("ca_certificates[{i}]"), pem)?;
        if !ca.is_ca {
            return Err(ContractError::bad(
                f,
                format!(
                    "ca_certificates[{i}] ({}) is not a CA certificate",
                    ca.info.subject
                ),
            ));
        }
    }
    for (name, pem) in &req.policy.publishers {
        check_id(f, "publisher name", name)?;
        parse_certificate(f, &format!("policy.publishers.{name}"), pem)?;
    }
    // The admin proves the CA is its own: its certificate must chain to one of them.
    check_chain(&caller.certificate, &req.ca_certificates, ctx.now()).map_err(|e| {
        ContractError::proof(
            f,
            format!("the admin's own certificate must chain to the CA being registered: {e}"),
        )
    })?;
    let existing = ctx.org(&req.msp_id)?;
    let org = Org {
        msp_id: req.msp_id.clone(),
        name: if req.name.is_empty() {
            req.msp_id.clone()
        } else {
            req.name.clone()
        },
        ca_certificates_pem: req
            .ca_certificates
            .iter()
            .map(|p| p.trim().to_owned() + "\n")
            .collect(),
        policy: req.policy,
        registered: ctx.stamp(&caller),
    };
    if let Some(existing) = &existing {
        // Re-registration (CA rotation, policy change) must come from an admin the current CAs
        // still recognise, so a stolen new CA cannot take over an organisation.
        check_chain(&caller.certificate, &existing.ca_certificates_pem, ctx.now())
            .map_err(|e| ContractError::denied(f, format!("organisation {} is registered already; only its current admins may update it: {e}", req.msp_id)))?;
    }
    ctx.put(&keys::key(keys::ORG, &[&org.msp_id])?, &org)?;
    let body = RecordBody::RegisterOrg {
        msp_id: org.msp_id.clone(),
        ca_certificates: org.ca_certificates_pem.len(),
        require_image_signature: org.policy.require_image_signature,
    };
    ctx.record(&caller, RecordKind::Org, vec![], body)
}

// --- devices ----------------------------------------------------------------------------------

pub fn identify_device(
    ctx: &mut Ctx,
    req: requests::IdentifyDevice,
) -> Result<LedgerRecord, ContractError> {
    let f = ctx.function;
    let (caller, _) = ctx.member(&[Role::Orchestrator])?;
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
    ctx.record(&caller, RecordKind::ProvIdCreate, vec![req.device_id], body)
}

pub fn terminate_device(
    ctx: &mut Ctx,
    req: requests::TerminateEntity,
) -> Result<LedgerRecord, ContractError> {
    let f = ctx.function;
    let (caller, _) = ctx.member(&[Role::Orchestrator])?;
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
    if !placed.is_empty() {
        guards.check(Err(GuardFailure::ContainersPlaced {
            device: req.id.clone(),
            containers: placed,
        }));
    }
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
    ctx.record(&caller, RecordKind::ProvIdDelete, vec![req.id], body)
}

// --- containers -------------------------------------------------------------------------------

pub fn identify_container(
    ctx: &mut Ctx,
    req: requests::IdentifyContainer,
) -> Result<LedgerRecord, ContractError> {
    let f = ctx.function;
    let (caller, _) = ctx.member(&[Role::Orchestrator])?;
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
            let signature = decode_signature(f, "publisher_signature.signature", &sig.signature)?;
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
    ctx.record(
        &caller,
        RecordKind::ProvIdCreate,
        vec![req.container_id],
        body,
    )
}

pub fn terminate_container(
    ctx: &mut Ctx,
    req: requests::TerminateEntity,
) -> Result<LedgerRecord, ContractError> {
    let f = ctx.function;
    let (caller, _) = ctx.member(&[Role::Orchestrator])?;
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
    ctx.record(&caller, RecordKind::ProvIdDelete, subjects, body)
}

// --- placement --------------------------------------------------------------------------------

pub fn place_container(
    ctx: &mut Ctx,
    req: requests::PlaceContainer,
) -> Result<LedgerRecord, ContractError> {
    let f = ctx.function;
    let (caller, _) = ctx.member(&[Role::Orchestrator])?;
    check_id(f, "container_id", &req.container_id)?;
    check_id(f, "device_id", &req.device_id)?;
    let container = ctx.entity(&req.container_id)?;
    let device = ctx.entity(&req.device_id)?;
    if let Some(Entity::Container(c)) = &container {
        ctx.acts_for(&caller, &c.org, "place containers")?;
        if let Some(Entity::Device(d)) = &device {
            if !ctx.consents(&d.org, &c.org, |p| &p.hosts_containers_of)? {
                return Err(ContractError::denied(
                    f,
                    format!(
                        "device {} of {} does not host containers of {}: {}'s policy does not name {} in hosts_containers_of",
                        d.id, d.org, c.org, d.org, c.org
                    ),
                ));
            }
        }
    }
    let mut guards = Guards::new();
    guards.check(guards::joined(
        &req.container_id,
        EntityType::Container,
        container.as_ref(),
    ));
    guards.check(guards::joined(
        &req.device_id,
        EntityType::Device,
        device.as_ref(),
    ));
    if let Some(Entity::Container(c)) = &container {
        // Re-placing on the same device is refused while the placement is active; once drift
        // reported it missing, stopped, unavailable or drifted, a fresh placement may replace it.
        if let Some(p) = c
            .placement
            .as_ref()
            .filter(|p| p.device == req.device_id && p.status.is_active())
        {
            guards.check(Err(GuardFailure::AlreadyPlaced {
                container: c.id.clone(),
                device: p.device.clone(),
                since_tx: p.stamp.tx_id.clone(),
            }));
        }
    }
    guards.finish("place container")?;
    let Some(Entity::Container(mut container)) = container else {
        return Err(ContractError::NotFound {
            kind: "container",
            id: req.container_id,
        });
    };
    let previous = container.placement.take().map(|p| p.device);
    if let Some(old) = &previous {
        ctx.delete_index(keys::PLACED_ON, &[old, &req.container_id])?;
    }
    ctx.put_index(keys::PLACED_ON, &[&req.device_id, &req.container_id])?;
    container.placement = Some(Placement {
        device: req.device_id.clone(),
        stamp: ctx.stamp(&caller),
        status: PlacementStatus::Authorised,
        previous_device: previous.clone(),
    });
    ctx.put_entity(&Entity::Container(container))?;
    let mut subjects = vec![req.container_id.clone(), req.device_id.clone()];
    subjects.extend(previous.clone());
    let body = RecordBody::Place {
        deployed: req.container_id,
        location: req.device_id,
        previous_location: previous,
    };
    ctx.record(&caller, RecordKind::Orchestrate, subjects, body)
}

/// The orchestrator reports how an authorised placement or removal went. A failed placement
/// removes the placement, so the ledger never claims a container runs where it does not.
pub fn record_outcome(
    ctx: &mut Ctx,
    req: requests::RecordOutcome,
) -> Result<LedgerRecord, ContractError> {
    let f = ctx.function;
    let (caller, _) = ctx.member(&[Role::Orchestrator])?;
    check_id(f, "container_id", &req.container_id)?;
    check_text(f, "authorising_tx", &req.authorising_tx)?;
    if req.detail.len() > 4 * MAX_TEXT_LEN {
        return Err(ContractError::bad(
            f,
            format!("detail must be at most {} characters", 4 * MAX_TEXT_LEN),
        ));
    }
    let Some(Entity::Container(mut container)) = ctx.entity(&req.container_id)? else {
        return Err(ContractError::NotFound {
            kind: "container",
            id: req.container_id,
        });
    };
    ctx.acts_for(&caller, &container.org, "report outcomes for containers")?;
    let mut subjects = vec![container.id.clone()];
    match (req.action.as_str(), req.outcome.as_str()) {
        ("place", outcome @ ("running" | "failed")) => {
            let Some(placement) = container
                .placement
                .clone()
                .filter(|p| p.stamp.tx_id == req.authorising_tx)
            else {
                let current = container.placement.as_ref().map_or("none".to_owned(), |p| {
                    format!("tx {} on {}", p.stamp.tx_id, p.device)
                });
                return Err(ContractError::GuardFailed {
                    transition: "record placement outcome",
                    failures: vec![GuardFailure::Precondition {
                        condition: "current-placement(container, tx)",
                        detail: format!("placement tx {} is not container {}'s current placement (current: {current})", req.authorising_tx, container.id),
                    }],
                });
            };
            if placement.status == PlacementStatus::Running {
                return Err(ContractError::GuardFailed {
                    transition: "record placement outcome",
                    failures: vec![GuardFailure::Precondition {
                        condition: "authorised(placement)",
                        detail: format!(
                            "placement tx {} was reported running already",
                            req.authorising_tx
                        ),
                    }],
                });
            }
            subjects.push(placement.device.clone());
            if outcome == "running" {
                container.placement = Some(Placement {
                    status: PlacementStatus::Running,
                    ..placement
                });
            } else {
                ctx.delete_index(keys::PLACED_ON, &[&placement.device, &container.id])?;
                container.last_failed_placement = Some(FailedPlacement {
                    device: placement.device.clone(),
                    placement_tx: req.authorising_tx.clone(),
                    reported: ctx.stamp(&caller),
                    detail: req.detail.clone(),
                });
                container.placement = None;
            }
        }
        ("terminate", "removed" | "failed") => {
            let left_tx = container.left.as_ref().map(|d| d.stamp.tx_id.clone());
            if left_tx.as_deref() != Some(req.authorising_tx.as_str()) {
                return Err(ContractError::GuardFailed {
                    transition: "record removal outcome",
                    failures: vec![GuardFailure::Precondition {
                        condition: "left(container, tx)",
                        detail: format!(
                            "container {} did not leave in tx {} (state: {})",
                            container.id,
                            req.authorising_tx,
                            Entity::Container(container.clone()).state_description()
                        ),
                    }],
                });
            }
        }
        (action, outcome) => {
            return Err(ContractError::bad(f, format!("action {action:?} with outcome {outcome:?}: expected place running|failed or terminate removed|failed")));
        }
    }
    ctx.put_entity(&Entity::Container(container))?;
    let body = RecordBody::Outcome {
        container: req.container_id,
        action: req.action,
        authorising_tx: req.authorising_tx,
        outcome: req.outcome,
        detail: req.detail,
    };
    ctx.record(&caller, RecordKind::Outcome, subjects, body)
}

/// The orchestrator records what it observed that differs from the ledger. Optionally the
/// observation updates the container's placement status (so the entity alone does not claim a
/// container runs that does not) and/or a device's availability (a maintenance window or a node
/// that stopped answering: the device has not left).
pub fn record_drift(
    ctx: &mut Ctx,
    req: requests::RecordDrift,
) -> Result<LedgerRecord, ContractError> {
    let f = ctx.function;
    let (caller, _) = ctx.member(&[Role::Orchestrator])?;
    check_text(f, "service", &req.service)?;
    check_text(f, "description", &req.description)?;
    if let Some(tx) = &req.authorising_tx {
        check_text(f, "authorising_tx", tx)?;
    }
    if req.placement_status.is_some() && req.container_id.is_none() {
        return Err(ContractError::bad(f, "placement_status needs container_id"));
    }
    if req.placement_status == Some(PlacementStatus::Authorised) {
        return Err(ContractError::bad(
            f,
            "placement_status authorised is set only by PlaceContainer",
        ));
    }
    if req.device_id.is_some() != req.device_status.is_some() {
        return Err(ContractError::bad(
            f,
            "device_id and device_status go together",
        ));
    }
    let mut subjects = Vec::new();
    let mut container_update = None;
    let mut guards = Guards::new();
    if let Some(id) = &req.container_id {
        check_id(f, "container_id", id)?;
        let entity = ctx.entity(id)?;
        if let Some(entity) = &entity {
            ctx.acts_for(&caller, entity.org(), "report drift of entities")?;
        }
        subjects.push(id.clone());
        if let Some(status) = req.placement_status {
            guards.check(guards::joined(id, EntityType::Container, entity.as_ref()));
            if let Some(Entity::Container(mut c)) = entity {
                match c.placement.clone() {
                    Some(p)
                        if req
                            .authorising_tx
                            .as_ref()
                            .is_none_or(|tx| *tx == p.stamp.tx_id) =>
                    {
                        if p.status == PlacementStatus::Authorised {
                            guards.check(Err(GuardFailure::Precondition {
                                condition: "reported(placement)",
                                detail: format!("placement tx {} of container {} has no outcome yet; RecordOutcome reports it first", p.stamp.tx_id, c.id),
                            }));
                        }
                        subjects.push(p.device.clone());
                        c.placement = Some(Placement { status, ..p });
                        container_update = Some(c);
                    }
                    current => {
                        guards.check(Err(GuardFailure::Precondition {
                        condition: "current-placement(container, tx)",
                        detail: format!(
                            "placement tx {} is not container {}'s current placement (current: {})",
                            req.authorising_tx.as_deref().unwrap_or("(any)"),
                            c.id,
                            current.map_or("none".to_owned(), |p| format!("tx {} on {}", p.stamp.tx_id, p.device))
                        ),
                    }));
                    }
                }
            }
        }
    }
    let mut device_update = None;
    if let (Some(id), Some(status)) = (&req.device_id, req.device_status) {
        check_id(f, "device_id", id)?;
        let entity = ctx.entity(id)?;
        if let Some(Entity::Device(d)) = &entity {
            ctx.acts_for(&caller, &d.org, "report device availability")?;
        }
        guards.check(guards::joined(id, EntityType::Device, entity.as_ref()));
        if let Some(Entity::Device(mut d)) = entity {
            d.availability = Some(DeviceAvailability {
                status,
                reason: req.description.clone(),
                reported: ctx.stamp(&caller),
            });
            device_update = Some(d);
        }
        if !subjects.contains(id) {
            subjects.push(id.clone());
        }
    }
    guards.finish("record drift")?;
    if let Some(c) = container_update {
        ctx.put_entity(&Entity::Container(c))?;
    }
    if let Some(d) = device_update {
        ctx.put_entity(&Entity::Device(d))?;
    }
    let body = RecordBody::Drift {
        service: req.service,
        container: req.container_id,
        description: req.description,
        action_taken: req.action_taken,
        placement_status: req.placement_status,
        device: req.device_id,
        device_status: req.device_status,
    };
    ctx.record(&caller, RecordKind::Drift, subjects, body)
}

// --- contracts --------------------------------------------------------------------------------

pub fn define_contract(
    ctx: &mut Ctx,
    req: requests::DefineContract,
) -> Result<LedgerRecord, ContractError> {
    let f = ctx.function;
    let (caller, _) = ctx.member(&[Role::Orchestrator])?;
    check_id(f, "contract_id", &req.contract_id)?;
    check_id(f, "contractor", &req.contractor)?;
    if req.uses.is_empty() && req.generates.is_empty() {
        return Err(ContractError::bad(
            f,
            "a contract must USE or GENERATE something",
        ));
    }
    for clause in &req.uses {
        check_id(f, "uses.kind", &clause.kind)?;
        if let Some(source) = &clause.source {
            check_id(f, "uses.source", source)?;
        }
    }
    for GenerateClause { kind } in &req.generates {
        check_id(f, "generates.kind", kind)?;
    }
    let deadline = crate::time::parse_rfc3339(&req.deadline).ok_or_else(|| {
        ContractError::bad(
            f,
            format!("deadline {:?} is not an RFC 3339 timestamp", req.deadline),
        )
    })?;
    if deadline <= ctx.now() {
        return Err(ContractError::bad(
            f,
            format!(
                "deadline {deadline} is not after the transaction time {}",
                ctx.now()
            ),
        ));
    }
    if let Some(existing) = ctx.contract(&req.contract_id)? {
        return Err(ContractError::AlreadyExists {
            kind: "contract",
            id: req.contract_id,
            detail: format!("defined in tx {}", existing.defined.tx_id),
        });
    }
    let contractor = ctx.entity(&req.contractor)?;
    if let Some(activity) = &contractor {
        ctx.acts_for(&caller, activity.org(), "define contracts for activities")?;
        for source in req.uses.iter().filter_map(|u| u.source.as_ref()) {
            if let Some(source_entity) = ctx.entity(source)? {
                check_shares_data(ctx, source_entity.org(), source, activity)?;
            }
        }
    }
    let mut guards = Guards::new();
    match &contractor {
        Some(Entity::Device(_)) => guards.check(guards::joined(
            &req.contractor,
            EntityType::Device,
            contractor.as_ref(),
        )),
        _ => guards.check(guards::joined(
            &req.contractor,
            EntityType::Container,
            contractor.as_ref(),
        )),
    };
    guards.finish("define contract")?;
    let stamp = ctx.stamp(&caller);
    let contract = ProcessingContract {
        id: req.contract_id.clone(),
        contractor: req.contractor.clone(),
        uses: req.uses.clone(),
        generates: req
            .generates
            .iter()
            .map(|g| Obligation {
                kind: g.kind.clone(),
                fulfilled_by: None,
                fulfilled_tx: None,
            })
            .collect(),
        deadline,
        state: ContractState::Active,
        defined: stamp.clone(),
        settled: None,
    };
    ctx.put_contract(&contract)?;
    // The credential (paper, IV-C (ii)): the contractor may now USE these inputs.
    let credential = Credential {
        contract: contract.id.clone(),
        activity: contract.contractor.clone(),
        uses: contract.uses.clone(),
        granted: stamp,
    };
    ctx.put(
        &keys::key(keys::CREDENTIAL, &[&req.contractor, &req.contract_id])?,
        &credential,
    )?;
    ctx.put_index(
        keys::CONTRACT_BY_CONTRACTOR,
        &[&req.contractor, &req.contract_id],
    )?;
    // The contract is about its contractor and about every named source of its inputs.
    let mut subjects = vec![req.contract_id.clone(), req.contractor.clone()];
    for source in req.uses.iter().filter_map(|u| u.source.as_ref()) {
        if !subjects.contains(source) {
            subjects.push(source.clone());
        }
    }
    let body = RecordBody::DefineContract {
        contract: req.contract_id,
        contractor: req.contractor,
        uses: req.uses,
        generates: req.generates.into_iter().map(|g| g.kind).collect(),
        deadline,
    };
    ctx.record(&caller, RecordKind::Contract, subjects, body)
}

/// Persist a contract's settlement once its deadline has passed (anyone registered may ask).
pub fn evaluate_contract(
    ctx: &mut Ctx,
    req: requests::EvaluateContract,
) -> Result<LedgerRecord, ContractError> {
    let (caller, _) =
        ctx.member(&[Role::Orchestrator, Role::Auditor, Role::Device, Role::Admin])?;
    check_id(ctx.function, "contract_id", &req.contract_id)?;
    let mut contract = ctx
        .contract(&req.contract_id)?
        .ok_or_else(|| ContractError::NotFound {
            kind: "contract",
            id: req.contract_id.clone(),
        })?;
    let now = ctx.now();
    if contract.state != ContractState::Active || contract.state_at(now) == ContractState::Active {
        return Err(ContractError::GuardFailed {
            transition: "settle contract",
            failures: vec![GuardFailure::Precondition {
                condition: "deadline-passed(contract)",
                detail: format!(
                    "contract {} is {} (deadline {})",
                    contract.id,
                    contract.state_description(now),
                    contract.deadline
                ),
            }],
        });
    }
    contract.state = ContractState::Violated;
    contract.settled = Some(ctx.stamp(&caller));
    ctx.put_contract(&contract)?;
    let body = RecordBody::SettleContract {
        contract: contract.id.clone(),
        state: contract.state,
    };
    ctx.record(
        &caller,
        RecordKind::Contract,
        vec![contract.id.clone(), contract.contractor.clone()],
        body,
    )
}

// --- data -------------------------------------------------------------------------------------

/// The certificate whose key must sign data generated by `generator`, and, for a container, the
/// device it runs on.
fn generator_signer(generator: &Entity) -> Result<(CertificateInfo, Option<String>), GuardFailure> {
    match generator {
        Entity::Device(d) => Ok((d.certificate.clone(), None)),
        Entity::Container(c) => {
            // An activity generates data only where it runs, and signs with its own key.
            let Some(host) = c.placement.as_ref().map(|p| p.device.clone()) else {
                return Err(GuardFailure::NotPlaced {
                    container: c.id.clone(),
                });
            };
            match &c.certificate {
                Some(cert) => Ok((cert.clone(), Some(host))),
                None => Err(GuardFailure::Precondition {
                    condition: "signing-identity(activity)",
                    detail: format!("container {} has no workload certificate; identify it with one to let it sign data", c.id),
                }),
            }
        }
        Entity::Data(d) => Err(GuardFailure::WrongType {
            id: d.id.clone(),
            expected: EntityType::Container,
            actual: EntityType::Data,
        }),
    }
}

pub fn record_data(
    ctx: &mut Ctx,
    req: requests::RecordData,
) -> Result<LedgerRecord, ContractError> {
    let f = ctx.function;
    let (caller, _) = ctx.member(&[Role::Device, Role::Orchestrator])?;
    check_id(f, "data_id", &req.data_id)?;
    check_id(f, "kind", &req.kind)?;
    check_sha256(f, "hash", &req.hash)?;
    check_text(f, "location", &req.location)?;
    check_id(f, "generated_by", &req.generated_by)?;
    let mut inputs = std::collections::BTreeSet::new();
    for input in &req.derived_from {
        check_id(f, "derived_from", input)?;
        if input == &req.data_id || !inputs.insert(input.as_str()) {
            return Err(ContractError::bad(
                f,
                format!("derived_from lists {input} twice or derives data from itself"),
            ));
        }
    }
    if let Some(existing) = ctx.entity(&req.data_id)? {
        return Err(taken(&req.data_id, &existing));
    }
    let generator = ctx.entity(&req.generated_by)?;
    let mut guards = Guards::new();
    let generator_type = match &generator {
        Some(Entity::Device(_)) => EntityType::Device,
        _ => EntityType::Container,
    };
    guards.check(guards::joined(
        &req.generated_by,
        generator_type,
        generator.as_ref(),
    ));
    let mut input_entities = Vec::with_capacity(req.derived_from.len());
    for input in &req.derived_from {
        let entity = ctx.entity(input)?;
        guards.check(guards::left(input, entity.as_ref()));
        input_entities.extend(entity);
    }
    let signer = match &generator {
        Some(g @ (Entity::Device(_) | Entity::Container(_)))
            if g.lifecycle() == Some(Lifecycle::Joined) =>
        {
            match generator_signer(g) {
                Ok(signer) => Some(signer),
                Err(failure) => {
                    guards.check(Err(failure));
                    None
                }
            }
        }
        _ => None,
    };
    guards.finish("leave data")?;
    let (Some(generator), Some((signer_cert, host_device))) = (generator, signer) else {
        return Err(ContractError::NotFound {
            kind: "activity",
            id: req.generated_by,
        });
    };
    check_data_submitter(ctx, &caller, &generator, &signer_cert)?;
    for input in &input_entities {
        check_shares_data(ctx, input.org(), input.id(), &generator)?;
    }
    let signer = Certificate::from_pem_cached(&signer_cert.pem).map_err(|e| {
        ContractError::CorruptState {
            key: req.generated_by.clone(),
            detail: e,
        }
    })?;
    signer.check_valid_at(ctx.now()).map_err(|e| {
        ContractError::proof(
            f,
            format!("the signing certificate of {}: {e}", req.generated_by),
        )
    })?;
    let signed = req
        .claim
        .open(claims::DATA_GENERATION_PREDICATE, |message, signature| {
            signer.verify(message, signature)
        })
        .map_err(|e| {
            ContractError::proof(
                f,
                format!(
                    "claim for data {} is not signed by generator {} ({}): {e}",
                    req.data_id, req.generated_by, signer.info.subject
                ),
            )
        })?;
    if let Some(field) = claims::mismatch(&signed, &req.statement(ctx.stub.channel_id())) {
        return Err(ContractError::proof(
            f,
            format!(
                "claim for data {} was signed for another claim: {field}",
                req.data_id
            ),
        ));
    }

    // Generated outputs fulfil the contractor's matching GENERATE obligations.
    let now = ctx.now();
    let tx_id = ctx.tx_id();
    let mut fulfils = Vec::new();
    for (key, _) in ctx.scan(keys::CONTRACT_BY_CONTRACTOR, &[&req.generated_by])? {
        let Some(contract_id) = crate::ledger::split_composite_key(&key)
            .and_then(|(_, a)| a.get(1).map(|s| (*s).to_owned()))
        else {
            continue;
        };
        let Some(mut contract) = ctx.contract(&contract_id)? else {
            continue;
        };
        if contract.state_at(now) != ContractState::Active {
            continue;
        }
        let Some(obligation) = contract
            .generates
            .iter_mut()
            .find(|o| o.kind == req.kind && o.fulfilled_by.is_none())
        else {
            continue;
        };
        obligation.fulfilled_by = Some(req.data_id.clone());
        obligation.fulfilled_tx = Some(tx_id.clone());
        if contract.generates.iter().all(|o| o.fulfilled_by.is_some()) {
            contract.state = ContractState::Fulfilled;
            contract.settled = Some(ctx.stamp(&caller));
        }
        ctx.put_contract(&contract)?;
        fulfils.push(contract.id);
    }

    let data = Data {
        id: req.data_id.clone(),
        kind: req.kind.clone(),
        hash: req.hash.clone(),
        size: req.size,
        location: req.location,
        generated_by: req.generated_by.clone(),
        generator_type,
        host_device: host_device.clone(),
        derived_from: req.derived_from.clone(),
        org: generator.org().to_owned(),
        claim: req.claim,
        signer_certificate_sha256: signer.info.sha256.clone(),
        fulfils: fulfils.clone(),
        recorded: ctx.stamp(&caller),
    };
    ctx.put_entity(&Entity::Data(data))?;
    ctx.put_index(keys::GENERATED, &[&req.generated_by, &req.data_id])?;
    for input in &req.derived_from {
        ctx.put_index(keys::DERIVED, &[input, &req.data_id])?;
    }
    let mut subjects = vec![req.data_id.clone(), req.generated_by.clone()];
    subjects.extend(host_device.clone());
    subjects.extend(req.derived_from.iter().cloned());
    subjects.extend(fulfils.iter().cloned());
    let body = RecordBody::RecordData {
        data: req.data_id,
        kind: req.kind,
        hash: req.hash,
        generated_by: req.generated_by,
        host_device,
        derived_from: req.derived_from,
        fulfils,
    };
    ctx.record(&caller, RecordKind::ProvData, subjects, body)
}

/// Data joins an activity: the EXEC of a contract (PROV-ORCH).
pub fn exec_contract(
    ctx: &mut Ctx,
    req: requests::ExecContract,
) -> Result<LedgerRecord, ContractError> {
    let f = ctx.function;
    let (caller, _) = ctx.member(&[Role::Orchestrator, Role::Device])?;
    check_id(f, "contract_id", &req.contract_id)?;
    check_id(f, "data_id", &req.data_id)?;
    let now = ctx.now();
    let contract = ctx
        .contract(&req.contract_id)?
        .ok_or_else(|| ContractError::NotFound {
            kind: "contract",
            id: req.contract_id.clone(),
        })?;
    let data = ctx.entity(&req.data_id)?;
    let activity = ctx.entity(&contract.contractor)?;
    let mut guards = Guards::new();
    guards.check(guards::left(&req.data_id, data.as_ref()));
    let activity_type = match &activity {
        Some(Entity::Device(_)) => EntityType::Device,
        _ => EntityType::Container,
    };
    guards.check(guards::joined(
        &contract.contractor,
        activity_type,
        activity.as_ref(),
    ));
    let host_device = match &activity {
        Some(Entity::Container(c)) if c.state == Lifecycle::Joined => match &c.placement {
            Some(p) => Some(p.device.clone()),
            None => {
                guards.check(Err(GuardFailure::NotPlaced {
                    container: c.id.clone(),
                }));
                None
            }
        },
        _ => None,
    };
    let state = contract.state_at(now);
    if state != ContractState::Active {
        guards.check(Err(GuardFailure::ContractNotActive {
            contract: contract.id.clone(),
            state: contract.state_description(now),
        }));
    }
    if let Some(Entity::Data(d)) = &data {
        let credential: Option<Credential> = ctx.get(&keys::key(
            keys::CREDENTIAL,
            &[&contract.contractor, &contract.id],
        )?)?;
        let granted = credential.is_some_and(|c| {
            c.uses
                .iter()
                .any(|u| u.kind == d.kind && u.source.as_ref().is_none_or(|s| s == &d.generated_by))
        });
        if !granted {
            guards.check(Err(GuardFailure::NoCredential {
                activity: contract.contractor.clone(),
                contract: contract.id.clone(),
                data: d.id.clone(),
                kind: d.kind.clone(),
                source: d.generated_by.clone(),
            }));
        }
        if let Some(tx) = ctx
            .stub
            .get_state(&keys::key(keys::USED, &[&d.id, &contract.id])?)?
        {
            guards.check(Err(GuardFailure::AlreadyUsed {
                data: d.id.clone(),
                contract: contract.id.clone(),
                tx_id: String::from_utf8_lossy(&tx).into_owned(),
            }));
        }
    }
    if let Some(activity) = &activity {
        if caller.role == Some(Role::Orchestrator) {
            ctx.acts_for(&caller, activity.org(), "execute contracts of activities")?;
        }
        if let Some(Entity::Data(d)) = &data {
            let owner = if d.org.is_empty() {
                // Recorded before data carried its organisation: its generator's.
                ctx.entity(&d.generated_by)?
                    .map(|g| g.org().to_owned())
                    .unwrap_or_default()
            } else {
                d.org.clone()
            };
            check_shares_data(ctx, &owner, &d.id, activity)?;
        }
    }
    // A device-role caller may only report its own use: it must be the activity's identity.
    if caller.role == Some(Role::Device) {
        let own = match &activity {
            Some(Entity::Container(c)) => c
                .certificate
                .as_ref()
                .is_some_and(|cert| cert.sha256 == caller.agent.certificate_sha256),
            Some(Entity::Device(d)) => d.certificate.sha256 == caller.agent.certificate_sha256,
            _ => false,
        };
        if !own {
            return Err(ContractError::denied(f, format!("{} is not activity {}'s identity; only the orchestrator or the activity itself may execute its contract", caller.agent.id, contract.contractor)));
        }
    }
    guards.finish("join data")?;
    ctx.put_index(keys::USED, &[&req.data_id, &contract.id])?;
    let mut subjects = vec![
        req.data_id.clone(),
        contract.contractor.clone(),
        contract.id.clone(),
    ];
    subjects.extend(host_device.clone());
    let body = RecordBody::ExecContract {
        data: req.data_id,
        activity: contract.contractor.clone(),
        contract: contract.id.clone(),
        host_device,
    };
    ctx.record(&caller, RecordKind::ProvOrch, subjects, body)
}
