//! Contract transactions per second on the in-memory Fabric-faithful ledger, with every
//! signature and certificate-chain check included: IdentifyDevice (creator chain, device chain
//! and id-proof), RecordData (creator chain and data signature) and ExecContract (creator chain
//! and guards). Request signing happens in the untimed setup, as it does on the device.
//!
//! Run: `cargo bench -p tom-contract --bench contract`

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::json;
use tom_contract::requests::IdentifyDevice;
use tom_fixtures::pki;

fn world() -> World {
    let mut w = World::with_orgs();
    w.identify_device("traffic-light-1", id("org1", "traffic-light-1"), "actuator")
        .unwrap();
    w.identify_device("edge-node-1", id("org1", "edge-node-1"), "edge-node")
        .unwrap();
    w.identify_container("analyser", Some(id("org1", "analyser")))
        .unwrap();
    w.place("analyser", "edge-node-1").unwrap();
    w.submit(
        id("org1", "orchestrator"),
        "DefineContract",
        json!({ "contract_id": "k1", "contractor": "analyser", "uses": [{ "kind": "vehicle-count" }], "deadline": "2099-01-01T00:00:00Z" }),
    )
    .unwrap();
    w
}

fn contract_transactions(c: &mut Criterion) {
    let mut group = c.benchmark_group("contract");
    group.throughput(Throughput::Elements(1));
    let orchestrator = id("org1", "orchestrator");
    let light = id("org1", "traffic-light-1");

    let mut w = world();
    let mut n = 0u64;
    let ca = tom_fixtures::org("org1").ca();
    group.bench_function("identify_device", |b| {
        b.iter_batched(
            || {
                // A fresh device certificate each time, so its chain is really verified.
                n += 1;
                let name = format!("dev-{n}");
                let issued = pki::issue_identity(
                    &ca,
                    &name,
                    Some("client"),
                    Some("device"),
                    (2024, 1, 1),
                    (2099, 12, 31),
                )
                .unwrap();
                let nonce = format!("bench-nonce-{n}");
                let req = IdentifyDevice::signed(
                    &name,
                    "Org1MSP",
                    "sensor",
                    &issued.cert_pem,
                    &nonce,
                    tom_contract::simulation::DEFAULT_CHANNEL,
                    |m| pki::sign_p256(&issued.key_pkcs8_pem, m).unwrap(),
                )
                .unwrap();
                serde_json::to_vec(&req).unwrap()
            },
            |arg| {
                w.submit_raw(orchestrator, "IdentifyDevice", &[&arg])
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });

    let mut w = world();
    let mut n = 0u64;
    group.bench_function("record_data", |b| {
        b.iter_batched(
            || {
                n += 1;
                let req = World::data_request(
                    light,
                    &format!("r-{n}"),
                    "vehicle-count",
                    "traffic-light-1",
                    &[],
                );
                serde_json::to_vec(&req).unwrap()
            },
            |arg| w.submit_raw(light, "RecordData", &[&arg]).unwrap(),
            BatchSize::SmallInput,
        )
    });

    // The setup records the datum each EXEC uses; both closures need the same ledger.
    let w = std::cell::RefCell::new(world());
    let mut n = 0u64;
    group.bench_function("exec_contract", |b| {
        b.iter_batched(
            || {
                n += 1;
                let data = format!("e-{n}");
                w.borrow_mut()
                    .record_data(light, light, &data, "vehicle-count", "traffic-light-1", &[])
                    .unwrap();
                serde_json::to_vec(&json!({ "contract_id": "k1", "data_id": data })).unwrap()
            },
            |arg| {
                w.borrow_mut()
                    .submit_raw(orchestrator, "ExecContract", &[&arg])
                    .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = contract_transactions
}
criterion_main!(benches);
