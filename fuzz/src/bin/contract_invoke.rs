//! `tom_contract::invoke` with any function name and argument bytes, as any caller, on the
//! in-memory ledger with two registered organisations. Input: byte 0 picks the function (or an
//! unknown name), byte 1 the caller, the rest is the JSON argument. Submits and evaluates.
use std::sync::OnceLock;

use tom_contract::memory::MemoryLedger;
use tom_contract::{Creator, Timestamp, FUNCTIONS};

fn creator(org: &str, name: &str) -> Creator {
    let id = tom_fixtures::identity(org, name);
    Creator {
        msp_id: id.msp_id.to_owned(),
        certificate_pem: id.cert_pem.as_bytes().to_vec(),
    }
}

const CALLERS: &[(&str, &str)] = &[
    ("org1", "admin"),
    ("org1", "orchestrator"),
    ("org1", "auditor"),
    ("org1", "edge-node-1"),
    ("org2", "orchestrator"),
];

fn world() -> &'static (MemoryLedger, Vec<Creator>) {
    static WORLD: OnceLock<(MemoryLedger, Vec<Creator>)> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut ledger = MemoryLedger::new();
        let now = Timestamp::from_seconds(1_767_225_600);
        for (i, org) in ["org1", "org2"].into_iter().enumerate() {
            let o = tom_fixtures::org(org);
            let arg = serde_json::json!({ "msp_id": o.msp_id, "ca_certificates": [o.ca_cert_pem] });
            let arg = serde_json::to_vec(&arg).unwrap();
            ledger
                .submit(
                    &creator(org, "admin"),
                    &format!("setup{i}"),
                    now,
                    "RegisterOrg",
                    &[&arg],
                )
                .unwrap();
        }
        let creators = CALLERS.iter().map(|(o, n)| creator(o, n)).collect();
        (ledger, creators)
    })
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let [f, who, argument @ ..] = data else {
            return;
        };
        let (ledger, creators) = world();
        let mut ledger = ledger.clone();
        let name = FUNCTIONS
            .get(usize::from(*f) % (FUNCTIONS.len() + 1))
            .map_or("NoSuchFunction", |f| f.name);
        let creator = &creators[usize::from(*who) % creators.len()];
        let now = Timestamp::from_seconds(1_767_225_700);
        let _ = ledger.submit(creator, "fuzz1", now, name, &[argument]);
        let _ = ledger.evaluate(creator, "fuzz2", now, name, &[argument]);
    });
}
