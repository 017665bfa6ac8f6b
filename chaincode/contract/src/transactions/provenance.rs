//! Provenance: processing contracts and their credentials (IV-C), data leaving a sensor or
//! activity (PROV-DATA) and data joining an activity under its contract (the EXEC, PROV-ORCH).

use super::{check_id, check_sha256, check_text};
use crate::claims;
use crate::context::{Caller, Ctx};
use crate::error::ContractError;
use crate::guards::{self, GuardFailure, Guards};
use crate::identity::Certificate;
use crate::keys;
use crate::model::*;
use crate::requests::{self, GenerateClause};
use crate::transaction::{Callers, Kind, Transaction};

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

// --- contracts --------------------------------------------------------------------------------

impl Transaction for requests::DefineContract {
    const NAME: &'static str = "DefineContract";
    const KIND: Kind = Kind::Submit;
    const RECORD: Option<RecordKind> = Some(RecordKind::Contract);
    const CALLERS: Callers = Callers::Members(&[Role::Orchestrator]);
    const DESCRIPTION: &'static str = "contract an activity to USE inputs and GENERATE outputs by a deadline; grants its credential";
    type Response = LedgerRecord;

    fn execute(self, ctx: &mut Ctx) -> Result<LedgerRecord, ContractError> {
        let req = self;
        let f = ctx.function;
        let caller = ctx.authorise::<Self>()?;
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
}

/// Persist a contract's settlement once its deadline has passed (anyone registered may ask).
impl Transaction for requests::EvaluateContract {
    const NAME: &'static str = "EvaluateContract";
    const KIND: Kind = Kind::Submit;
    const RECORD: Option<RecordKind> = Some(RecordKind::Contract);
    const CALLERS: Callers = Callers::AnyMember;
    const DESCRIPTION: &'static str =
        "settle a contract whose deadline passed unfulfilled as violated";
    type Response = LedgerRecord;

    fn execute(self, ctx: &mut Ctx) -> Result<LedgerRecord, ContractError> {
        let req = self;
        let caller = ctx.authorise::<Self>()?;
        check_id(ctx.function, "contract_id", &req.contract_id)?;
        let mut contract =
            ctx.contract(&req.contract_id)?
                .ok_or_else(|| ContractError::NotFound {
                    kind: "contract",
                    id: req.contract_id.clone(),
                })?;
        let now = ctx.now();
        Guards::new()
            .check(guards::deadline_passed(&contract, now))
            .finish("settle contract")?;
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
}

// --- data -------------------------------------------------------------------------------------

/// The certificate whose key must sign data generated by `generator`, and, for a container, the
/// device it runs on.
fn generator_signer(generator: &Entity) -> Result<(CertificateInfo, Option<String>), GuardFailure> {
    match generator {
        Entity::Device(d) => Ok((d.certificate.clone(), None)),
        Entity::Container(c) => {
            // An activity generates data only where it runs, and signs with its own key.
            let host = guards::placed(c)?.to_owned();
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

impl Transaction for requests::RecordData {
    const NAME: &'static str = "RecordData";
    const KIND: Kind = Kind::Submit;
    const RECORD: Option<RecordKind> = Some(RecordKind::ProvData);
    const CALLERS: Callers = Callers::Members(&[Role::Device, Role::Orchestrator]);
    const DESCRIPTION: &'static str =
        "data leaves a sensor or activity: PROV-DATA with signed hash";
    type Response = LedgerRecord;

    fn execute(self, ctx: &mut Ctx) -> Result<LedgerRecord, ContractError> {
        let req = self;
        let f = ctx.function;
        let caller = ctx.authorise::<Self>()?;
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
}

/// Data joins an activity: the EXEC of a contract (PROV-ORCH).
impl Transaction for requests::ExecContract {
    const NAME: &'static str = "ExecContract";
    const KIND: Kind = Kind::Submit;
    const RECORD: Option<RecordKind> = Some(RecordKind::ProvOrch);
    const CALLERS: Callers = Callers::OrchestratorOrActivity;
    const DESCRIPTION: &'static str =
        "data joins an activity under its contract (guard left(data)); PROV-ORCH";
    type Response = LedgerRecord;

    fn execute(self, ctx: &mut Ctx) -> Result<LedgerRecord, ContractError> {
        let req = self;
        let f = ctx.function;
        let caller = ctx.authorise::<Self>()?;
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
            Some(Entity::Container(c)) if c.state == Lifecycle::Joined => {
                guards.hold(guards::placed(c)).map(str::to_owned)
            }
            _ => None,
        };
        guards.check(guards::active(&contract, now));
        if let Some(Entity::Data(d)) = &data {
            let credential: Option<Credential> = ctx.get(&keys::key(
                keys::CREDENTIAL,
                &[&contract.contractor, &contract.id],
            )?)?;
            guards.check(guards::credential(&contract, credential.as_ref(), d));
            let used_tx = ctx
                .stub
                .get_state(&keys::key(keys::USED, &[&d.id, &contract.id])?)?;
            guards.check(guards::not_used(d, &contract, used_tx.as_deref()));
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
}
