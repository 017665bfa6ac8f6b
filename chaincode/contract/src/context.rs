//! One transaction's view of the contract's state: typed reads and writes over the ledger stub,
//! caller authentication, and the single place where ledger records, their indexes and the
//! chaincode event are written.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ContractError;
use crate::identity::{check_chain, Certificate};
use crate::keys;
use crate::ledger::{LedgerStub, Timestamp};
use crate::model::{
    AgentRef, Entity, LedgerRecord, Org, ProcessingContract, RecordBody, RecordKind, Role, Stamp,
};
use crate::transaction::{Callers, Transaction};

/// The authenticated creator of the transaction.
#[derive(Clone)]
pub struct Caller {
    pub agent: AgentRef,
    pub certificate: std::sync::Arc<Certificate>,
    pub role: Option<Role>,
}

pub struct Ctx<'a> {
    pub stub: &'a mut dyn LedgerStub,
    pub function: &'static str,
    /// The creator, parsed once per transaction.
    caller: std::cell::OnceCell<Caller>,
}

impl<'a> Ctx<'a> {
    pub fn new(stub: &'a mut dyn LedgerStub, function: &'static str) -> Self {
        Ctx {
            stub,
            function,
            caller: std::cell::OnceCell::new(),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.stub.tx_timestamp()
    }

    pub fn tx_id(&self) -> String {
        self.stub.tx_id().to_owned()
    }

    pub fn stamp(&self, caller: &Caller) -> Stamp {
        Stamp {
            tx_id: self.tx_id(),
            at: self.now(),
            by: caller.agent.clone(),
        }
    }

    // --- typed state access -------------------------------------------------------------

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ContractError> {
        match self.stub.get_state(key)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| ContractError::CorruptState {
                        key: key.to_owned(),
                        detail: e.to_string(),
                    })
            }
        }
    }

    pub fn put<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), ContractError> {
        let bytes = serde_json::to_vec(value).map_err(|e| ContractError::CorruptState {
            key: key.to_owned(),
            detail: e.to_string(),
        })?;
        Ok(self.stub.put_state(key, bytes)?)
    }

    pub fn entity(&self, id: &str) -> Result<Option<Entity>, ContractError> {
        self.get(&keys::key(keys::ENTITY, &[id])?)
    }

    pub fn put_entity(&mut self, entity: &Entity) -> Result<(), ContractError> {
        let key = keys::key(keys::ENTITY, &[entity.id()])?;
        self.put(&key, entity)?;
        self.index_entity_state(entity)
    }

    /// Keep the inventory index of a device or container in step with its state: the entries
    /// of the states it is in are written, those of every other state deleted (so the index
    /// is right whatever state it was in before, without reading it).
    fn index_entity_state(&mut self, entity: &Entity) -> Result<(), ContractError> {
        use crate::model::{DeviceStatus, Lifecycle};
        let (object_type, all, current): (&str, &[&str], Vec<&str>) = match entity {
            Entity::Device(d) => {
                let mut current = vec!["any"];
                match d.state {
                    Lifecycle::Left => current.push("left"),
                    Lifecycle::Joined => {
                        current.push("joined");
                        current.push(match d.availability.as_ref().map(|a| a.status) {
                            Some(DeviceStatus::Unavailable) => "unavailable",
                            _ => "available",
                        });
                    }
                }
                (
                    keys::DEVICE_BY_STATE,
                    &["any", "joined", "left", "available", "unavailable"],
                    current,
                )
            }
            Entity::Container(c) => (
                keys::CONTAINER_BY_STATE,
                &["any", "joined", "left"],
                vec![
                    "any",
                    match c.state {
                        Lifecycle::Joined => "joined",
                        Lifecycle::Left => "left",
                    },
                ],
            ),
            Entity::Data(_) => return Ok(()),
        };
        let (org, id) = (entity.org().to_owned(), entity.id().to_owned());
        for state in all {
            if current.contains(state) {
                self.put_index(object_type, &[state, &org, &id])?;
            } else {
                self.delete_index(object_type, &[state, &org, &id])?;
            }
        }
        Ok(())
    }

    pub fn org(&self, msp_id: &str) -> Result<Option<Org>, ContractError> {
        self.get(&keys::key(keys::ORG, &[msp_id])?)
    }

    pub fn contract(&self, id: &str) -> Result<Option<ProcessingContract>, ContractError> {
        self.get(&keys::key(keys::CONTRACT, &[id])?)
    }

    pub fn put_contract(&mut self, contract: &ProcessingContract) -> Result<(), ContractError> {
        use crate::model::ContractState;
        let key = keys::key(keys::CONTRACT, &[&contract.id])?;
        self.put(&key, contract)?;
        // The inventory index (see `keys::CONTRACT_BY_STATE`): the stored state's entry is
        // written, the others deleted.
        let id = contract.id.as_str();
        let deadline = contract.deadline.sortable();
        self.put_index(keys::CONTRACT_BY_STATE, &["any", id])?;
        let active: &[&str] = &["active", &deadline, id];
        let fulfilled: &[&str] = &["fulfilled", id];
        let violated: &[&str] = &["violated", id];
        for (state, attributes) in [
            (ContractState::Active, active),
            (ContractState::Fulfilled, fulfilled),
            (ContractState::Violated, violated),
        ] {
            if contract.state == state {
                self.put_index(keys::CONTRACT_BY_STATE, attributes)?;
            } else {
                self.delete_index(keys::CONTRACT_BY_STATE, attributes)?;
            }
        }
        Ok(())
    }

    /// Keys (and values) under a partial composite key.
    pub fn scan(
        &self,
        object_type: &str,
        attributes: &[&str],
    ) -> Result<Vec<(String, Vec<u8>)>, ContractError> {
        Ok(self
            .stub
            .get_state_by_partial_composite_key(object_type, attributes)?
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect())
    }

    /// An index entry: the value is the transaction id that wrote it (Fabric forbids empty values).
    pub fn put_index(
        &mut self,
        object_type: &str,
        attributes: &[&str],
    ) -> Result<(), ContractError> {
        let key = keys::key(object_type, attributes)?;
        let tx_id = self.tx_id();
        Ok(self.stub.put_state(&key, tx_id.into_bytes())?)
    }

    pub fn delete_index(
        &mut self,
        object_type: &str,
        attributes: &[&str],
    ) -> Result<(), ContractError> {
        let key = keys::key(object_type, attributes)?;
        Ok(self.stub.delete_state(&key)?)
    }

    // --- callers --------------------------------------------------------------------------

    /// Anyone whose certificate is readable and valid at the transaction time (the peer's MSP
    /// has already checked membership); this is enough to read.
    pub fn caller(&self) -> Result<Caller, ContractError> {
        if let Some(caller) = self.caller.get() {
            return Ok(caller.clone());
        }
        let caller = self.authenticate()?;
        Ok(self.caller.get_or_init(|| caller).clone())
    }

    fn authenticate(&self) -> Result<Caller, ContractError> {
        let creator = self.stub.creator();
        let pem = std::str::from_utf8(&creator.certificate_pem).map_err(|_| {
            ContractError::denied(self.function, "creator certificate is not PEM text")
        })?;
        let certificate = Certificate::from_pem_cached(pem).map_err(|e| {
            ContractError::denied(self.function, format!("creator certificate: {e}"))
        })?;
        certificate
            .check_valid_at(self.now())
            .map_err(|e| ContractError::denied(self.function, e))?;
        let role = certificate
            .role()
            .map_err(|e| ContractError::denied(self.function, e))?;
        let agent = certificate.agent(&creator.msp_id);
        Ok(Caller {
            agent,
            certificate,
            role,
        })
    }

    /// A caller who may write: one of `roles`, of a registered organisation whose CA issued the
    /// certificate.
    pub fn member(&self, roles: &[Role]) -> Result<(Caller, Org), ContractError> {
        let caller = self.caller()?;
        let allowed: Vec<&str> = roles.iter().map(Role::as_str).collect();
        match caller.role {
            Some(role) if roles.contains(&role) => {}
            Some(role) => {
                return Err(ContractError::denied(
                    self.function,
                    format!(
                        "{} has role {role}; this needs role {}",
                        caller.agent.id,
                        allowed.join(" or ")
                    ),
                ))
            }
            None => {
                return Err(ContractError::denied(
                    self.function,
                    format!(
                        "{} has no tom.role attribute; this needs role {}",
                        caller.agent.id,
                        allowed.join(" or ")
                    ),
                ))
            }
        }
        let org = self.org(&caller.agent.msp_id)?.ok_or_else(|| {
            ContractError::denied(
                self.function,
                format!("organisation {} is not registered", caller.agent.msp_id),
            )
        })?;
        check_chain(&caller.certificate, &org.ca_certificates_pem, self.now())
            .map_err(|e| ContractError::denied(self.function, e))?;
        // A writer's agent id keys its records' index: it must be in the agent grammar.
        crate::ids::AGENT
            .check("creator", &caller.agent.id)
            .map_err(|e| ContractError::denied(self.function, e))?;
        Ok((caller, org))
    }

    /// The caller, if [`Transaction::CALLERS`] admits it: the one place a transaction's roles
    /// are checked, so they are written once, on the transaction.
    pub fn authorise<T: Transaction>(&self) -> Result<Caller, ContractError> {
        match T::CALLERS {
            Callers::Anyone => self.caller(),
            Callers::Admin => {
                let caller = self.caller()?;
                if caller.role != Some(Role::Admin) {
                    return Err(ContractError::denied(
                        self.function,
                        format!(
                            "{} is not an admin (tom.role=admin needed)",
                            caller.agent.id
                        ),
                    ));
                }
                Ok(caller)
            }
            callers => self.member(callers.roles()).map(|(caller, _)| caller),
        }
    }

    /// The organisation-boundary rule: `caller` may act on entities of organisation `owner`
    /// when it belongs to `owner`, or `owner`'s policy names the caller's organisation among
    /// its `orchestrators` (consent recorded on the ledger by `owner`'s admin).
    pub fn acts_for(&self, caller: &Caller, owner: &str, what: &str) -> Result<(), ContractError> {
        if caller.agent.msp_id == owner {
            return Ok(());
        }
        let consents = self
            .org(owner)?
            .is_some_and(|org| org.policy.orchestrators.contains(&caller.agent.msp_id));
        if consents {
            Ok(())
        } else {
            Err(ContractError::denied(
                self.function,
                format!(
                    "{} may not {what} of organisation {owner}: {owner}'s policy does not name {} among its orchestrators",
                    caller.agent.id, caller.agent.msp_id
                ),
            ))
        }
    }

    /// Whether organisation `owner` consents, by `consent` of its policy, to organisation
    /// `other` (always true for itself).
    pub fn consents(
        &self,
        owner: &str,
        other: &str,
        consent: fn(&crate::model::OrgPolicy) -> &std::collections::BTreeSet<String>,
    ) -> Result<bool, ContractError> {
        if owner == other {
            return Ok(true);
        }
        Ok(self
            .org(owner)?
            .is_some_and(|org| consent(&org.policy).contains(other)))
    }

    // --- records --------------------------------------------------------------------------

    /// Write this transaction's ledger record with its time, agent and entity indexes, and emit
    /// the chaincode event named after its kind. Called exactly once per committing transaction.
    pub fn record(
        &mut self,
        caller: &Caller,
        kind: RecordKind,
        subjects: Vec<String>,
        body: RecordBody,
    ) -> Result<LedgerRecord, ContractError> {
        let record = LedgerRecord {
            kind,
            tx_id: self.tx_id(),
            timestamp: self.now(),
            agent: caller.agent.clone(),
            subjects,
            body,
        };
        let tx_id = record.tx_id.clone();
        let at = record.timestamp.sortable();
        self.put(&keys::key(keys::RECORD, &[&tx_id])?, &record)?;
        self.put_index(keys::BY_TIME, &[&at, &tx_id])?;
        self.put_index(keys::BY_AGENT, &[&record.agent.id, &at, &tx_id])?;
        for subject in &record.subjects {
            self.put_index(keys::BY_ENTITY, &[subject, &at, &tx_id])?;
        }
        let payload = serde_json::to_vec(&record).map_err(|e| ContractError::CorruptState {
            key: tx_id.clone(),
            detail: e.to_string(),
        })?;
        self.stub.set_event(kind.as_str(), payload)?;
        Ok(record)
    }
}
