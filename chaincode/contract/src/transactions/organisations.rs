//! Organisations: RegisterOrg, by which an organisation's admin puts its MSP id, CA certificates
//! and policy (consents across the organisation boundary) on the ledger.

use super::{check_id, parse_certificate};
use crate::context::Ctx;
use crate::error::ContractError;
use crate::identity::check_chain;
use crate::keys;
use crate::model::*;
use crate::requests;
use crate::transaction::{Callers, Kind, Transaction};

// --- RegisterOrg ------------------------------------------------------------------------------

impl Transaction for requests::RegisterOrg {
    const NAME: &'static str = "RegisterOrg";
    const KIND: Kind = Kind::Submit;
    const RECORD: Option<RecordKind> = Some(RecordKind::Org);
    const CALLERS: Callers = Callers::Admin;
    const DESCRIPTION: &'static str =
        "register an organisation's MSP id, CA certificates and container policy";
    type Response = LedgerRecord;

    fn execute(self, ctx: &mut Ctx) -> Result<LedgerRecord, ContractError> {
        let req = self;
        let f = ctx.function;
        let caller = ctx.authorise::<Self>()?;
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
}
