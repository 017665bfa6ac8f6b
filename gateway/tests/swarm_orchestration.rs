//! The placement protocol on the real swarm: place, terminate, a bad image, a gateway killed
//! between steps, and drift in both directions. Needs the engine and image that
//! scripts/setup/20-docker-swarm.sh and 40-test-images.sh prepare; fails (never skips) without.

mod swarm_common;

use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptions;
use swarm_common::*;
use tom_gateway::ledger::Ledger;
use tom_gateway::orchestration::{Failpoint, OrchestrationError, Resolution};
use tom_gateway::swarm::docker::BollardSwarm;
use tom_gateway::swarm::{
    ServiceRequest, SwarmDriver, TaskPhase, LABEL_AUTHORISING_TX, LABEL_CONTAINER, LABEL_GATEWAY,
};

/// The engine's containers (any state) of the service named `name`, by the label Swarm sets,
/// asked with plain bollard rather than through the driver.
async fn containers_named(swarm: &BollardSwarm, name: &str) -> Vec<String> {
    let filters = std::collections::HashMap::from([(
        "label".to_owned(),
        vec![format!("com.docker.swarm.service.name={name}")],
    )]);
    swarm
        .docker()
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_iter()
        .map(|c| format!("{} {:?}", c.id.unwrap_or_default(), c.state))
        .collect()
}

async fn services_of(
    swarm: &dyn SwarmDriver,
    container: &str,
) -> Vec<tom_gateway::swarm::ServiceInfo> {
    swarm
        .tom_services()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.container_id() == Some(container))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn place_runs_the_service_on_the_node_and_terminate_removes_it() {
    let swarm = swarm().await;
    let image = workload_image(&swarm).await;
    let ledger = ledger().await;
    let instance = unique("t-place");
    let _cleanup = Cleanup(instance.clone());
    let dir = tempfile::tempdir().unwrap();
    let orch = orchestrator(
        ledger.clone(),
        swarm.clone(),
        &dir.path().join("journal.redb"),
        config(&instance),
    );
    let node = bind_device(&orch, &swarm).await;
    let container = unique("idle");
    identify_container(ledger.as_ref(), &container, &image, None).await;

    let placed = orch
        .place(&orchestrator_identity(), &container, DEVICE)
        .await
        .unwrap();
    assert_eq!(
        placed.node_id.as_deref(),
        Some(node.as_str()),
        "the task runs on the device's node"
    );

    // The swarm runs exactly the ledger's image, one replica, labelled with the authorisation.
    let services = services_of(swarm.as_ref(), &container).await;
    assert_eq!(services.len(), 1, "{services:?}");
    assert_eq!(
        services[0].image, image,
        "the service is pinned to the recorded digest"
    );
    assert_eq!(
        services[0].labels.get(LABEL_AUTHORISING_TX),
        Some(&placed.authorising_tx)
    );
    assert_eq!(services[0].labels.get(LABEL_GATEWAY), Some(&instance));
    let tasks = swarm.service_tasks(&placed.service_id).await.unwrap();
    assert!(
        tasks
            .iter()
            .any(|t| t.phase == TaskPhase::Running && t.node_id.as_deref() == Some(node.as_str())),
        "{tasks:?}"
    );

    // The ledger says so: placement running, OUTCOME naming the service and node.
    let state = entity(ledger.as_ref(), &container).await;
    assert_eq!(state["placement"]["status"], "running");
    assert_eq!(state["placement"]["device"], DEVICE);
    assert_eq!(
        state["placement"]["stamp"]["tx_id"],
        placed.authorising_tx.as_str()
    );
    let outcome = record(ledger.as_ref(), &placed.outcome_tx).await;
    assert_eq!(outcome["kind"], "OUTCOME");
    assert_eq!(outcome["body"]["outcome"], "running");
    assert!(
        outcome["body"]["detail"].as_str().unwrap().contains(&node),
        "{outcome}"
    );
    assert!(orch.journal().open_actions().unwrap().is_empty());
    assert_eq!(orch.journal().tracked().unwrap().len(), 1);

    // Placing it again on the same device is refused by the contract, and nothing is created.
    let again = orch
        .place(&orchestrator_identity(), &container, DEVICE)
        .await
        .unwrap_err();
    assert!(matches!(again, OrchestrationError::Ledger(_)), "{again}");
    assert_eq!(services_of(swarm.as_ref(), &container).await.len(), 1);

    assert_eq!(
        containers_named(&swarm, &placed.service_name).await.len(),
        1,
        "the engine runs one container of the service"
    );
    let terminated = orch
        .terminate_container(&orchestrator_identity(), &container, Some("test over"))
        .await
        .unwrap();
    assert_eq!(
        terminated.removed_services,
        vec![placed.service_name.clone()]
    );
    assert!(
        services_of(swarm.as_ref(), &container).await.is_empty(),
        "the service is gone"
    );
    // Completion is recorded only once the workload is gone, not when the remove call returns.
    let left = containers_named(&swarm, &placed.service_name).await;
    assert!(
        left.is_empty(),
        "containers of {} remain after termination: {left:?}",
        placed.service_name
    );
    let state = entity(ledger.as_ref(), &container).await;
    assert_eq!(state["state"], "left");
    assert_eq!(state["left"]["reason"], "test over");
    let removal = record(ledger.as_ref(), &terminated.outcome_tx).await;
    assert_eq!(removal["body"]["action"], "terminate");
    assert_eq!(removal["body"]["outcome"], "removed");
    assert_eq!(
        removal["body"]["authorising_tx"],
        terminated.leave_tx.as_str()
    );
    assert!(orch.journal().tracked().unwrap().is_empty());
    remove_instance_services(&swarm, &instance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_image_is_a_failed_placement_with_the_engines_message() {
    let swarm = swarm().await;
    let ledger = ledger().await;
    let instance = unique("t-bad");
    let _cleanup = Cleanup(instance.clone());
    let dir = tempfile::tempdir().unwrap();
    let orch = orchestrator(
        ledger.clone(),
        swarm.clone(),
        &dir.path().join("journal.redb"),
        config(&instance),
    );
    bind_device(&orch, &swarm).await;
    let container = unique("ghost");
    // A digest no image on this engine has (and no registry can supply).
    let missing = format!(
        "sha256:{}",
        hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            container.as_bytes()
        ))
    );
    identify_container(ledger.as_ref(), &container, &missing, None).await;

    let error = orch
        .place(&orchestrator_identity(), &container, DEVICE)
        .await
        .unwrap_err();
    let OrchestrationError::PlacementFailed {
        detail,
        outcome_tx,
        authorising_tx,
        ..
    } = &error
    else {
        panic!("expected a failed placement, got {error}");
    };
    assert!(
        detail.contains("No such image"),
        "the engine's own message is kept: {detail}"
    );
    assert!(
        error.to_string().contains("No such image"),
        "the caller sees it too: {error}"
    );

    // The ledger never says running: no placement, and the failure with Docker's words.
    let state = entity(ledger.as_ref(), &container).await;
    assert!(state["placement"].is_null(), "{state}");
    assert_eq!(
        state["last_failed_placement"]["placement_tx"],
        authorising_tx.as_str()
    );
    assert!(state["last_failed_placement"]["detail"]
        .as_str()
        .unwrap()
        .contains("No such image"));
    let outcome = record(ledger.as_ref(), outcome_tx).await;
    assert_eq!(outcome["body"]["outcome"], "failed");
    // And nothing is left on the swarm.
    assert!(services_of(swarm.as_ref(), &container).await.is_empty());
    assert!(orch.journal().open_actions().unwrap().is_empty());
    remove_instance_services(&swarm, &instance).await;
}

/// Start a placement that freezes at `step` as if the gateway died there, then "restart":
/// drop the orchestrator, reopen the journal, recover.
struct Restarted {
    ledger: Arc<tom_gateway::ledger::memory::InMemoryLedger>,
    swarm: Arc<tom_gateway::swarm::docker::BollardSwarm>,
    container: String,
    instance: String,
    recovered: Vec<tom_gateway::orchestration::Recovered>,
    orch: tom_gateway::orchestration::Orchestrator,
    _dir: tempfile::TempDir,
    _cleanup: Cleanup,
}

async fn crash_at(step: Failpoint) -> Restarted {
    let swarm = swarm().await;
    let image = workload_image(&swarm).await;
    let ledger = ledger().await;
    let instance = unique("t-crash");
    let cleanup = Cleanup(instance.clone());
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.redb");
    let container = unique("crash");
    identify_container(ledger.as_ref(), &container, &image, None).await;

    let reached = Arc::new(tokio::sync::Notify::new());
    let signal = reached.clone();
    let hook: tom_gateway::orchestration::PauseHook = Arc::new(move |at| {
        if at == step {
            signal.notify_one();
            true
        } else {
            false
        }
    });
    let orch = Arc::new(
        orchestrator(ledger.clone(), swarm.clone(), &journal, config(&instance))
            .with_pause_hook(hook),
    );
    bind_device(&orch, &swarm).await;
    let running = orch.clone();
    let c = container.clone();
    let task =
        tokio::spawn(async move { running.place(&orchestrator_identity(), &c, DEVICE).await });
    tokio::time::timeout(Duration::from_secs(60), reached.notified())
        .await
        .expect("the placement reached the crash point");
    task.abort();
    let _ = task.await;
    drop(orch); // the journal file is closed: the "process" is gone

    let restarted = orchestrator(ledger.clone(), swarm.clone(), &journal, config(&instance));
    assert_eq!(
        restarted.journal().open_actions().unwrap().len(),
        1,
        "the journal kept the open action"
    );
    let recovered = restarted.recover().await.unwrap();
    Restarted {
        ledger,
        swarm,
        container,
        instance,
        recovered,
        orch: restarted,
        _dir: dir,
        _cleanup: cleanup,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_authorise_and_create_is_rolled_back_at_restart() {
    let Restarted {
        ledger,
        swarm,
        container,
        instance,
        recovered,
        orch,
        _dir,
        _cleanup,
    } = crash_at(Failpoint::Authorised).await;
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(
        recovered[0].resolution,
        Resolution::RolledBack,
        "{recovered:?}"
    );
    assert_eq!(recovered[0].container_id, container);
    let state = entity(ledger.as_ref(), &container).await;
    assert!(
        state["placement"].is_null(),
        "the ledger no longer claims a placement: {state}"
    );
    let detail = state["last_failed_placement"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("rolled back after a gateway restart"),
        "{detail}"
    );
    let outcome = record(ledger.as_ref(), recovered[0].outcome_tx.as_ref().unwrap()).await;
    assert_eq!(outcome["body"]["outcome"], "failed");
    assert!(
        services_of(swarm.as_ref(), &container).await.is_empty(),
        "nothing was started"
    );
    assert!(orch.journal().open_actions().unwrap().is_empty());
    // Recovery is idempotent: a second start finds nothing to do.
    assert!(orch.recover().await.unwrap().is_empty());
    // The container can be placed again afterwards.
    orch.place(&orchestrator_identity(), &container, DEVICE)
        .await
        .unwrap();
    orch.terminate_container(&orchestrator_identity(), &container, None)
        .await
        .unwrap();
    remove_instance_services(&swarm, &instance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_create_is_finished_at_restart() {
    let Restarted {
        ledger,
        swarm,
        container,
        instance,
        recovered,
        orch,
        _dir,
        _cleanup,
    } = crash_at(Failpoint::Created).await;
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(
        recovered[0].resolution,
        Resolution::Finished,
        "{recovered:?}"
    );
    let state = entity(ledger.as_ref(), &container).await;
    assert_eq!(state["placement"]["status"], "running", "{state}");
    let outcome = record(ledger.as_ref(), recovered[0].outcome_tx.as_ref().unwrap()).await;
    assert!(
        outcome["body"]["detail"]
            .as_str()
            .unwrap()
            .contains("completed after a gateway restart"),
        "{outcome}"
    );
    assert_eq!(services_of(swarm.as_ref(), &container).await.len(), 1);
    orch.terminate_container(&orchestrator_identity(), &container, None)
        .await
        .unwrap();
    assert!(services_of(swarm.as_ref(), &container).await.is_empty());
    remove_instance_services(&swarm, &instance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_removed_behind_toms_back_is_recorded_as_drift_once() {
    let swarm = swarm().await;
    let image = workload_image(&swarm).await;
    let ledger = ledger().await;
    let instance = unique("t-drift");
    let _cleanup = Cleanup(instance.clone());
    let dir = tempfile::tempdir().unwrap();
    let orch = orchestrator(
        ledger.clone(),
        swarm.clone(),
        &dir.path().join("journal.redb"),
        config(&instance),
    );
    bind_device(&orch, &swarm).await;
    let container = unique("victim");
    identify_container(ledger.as_ref(), &container, &image, None).await;
    let placed = orch
        .place(&orchestrator_identity(), &container, DEVICE)
        .await
        .unwrap();

    assert!(
        orch.reconcile(false).await.unwrap().drift.is_empty(),
        "no drift while the swarm matches the ledger"
    );
    // `docker service rm` by someone else.
    assert!(swarm.remove_service(&placed.service_id).await.unwrap());

    let report = orch.reconcile(false).await.unwrap();
    assert_eq!(report.drift.len(), 1, "{report:?}");
    let drift = &report.drift[0];
    assert_eq!(drift.container_id.as_deref(), Some(container.as_str()));
    assert!(
        drift.description.contains("removed outside TOM"),
        "{drift:?}"
    );
    let recorded = record(ledger.as_ref(), &drift.drift_tx).await;
    assert_eq!(recorded["kind"], "DRIFT");
    assert_eq!(recorded["body"]["service"], placed.service_name.as_str());
    assert_eq!(recorded["subjects"][0], container.as_str());
    assert_eq!(recorded["body"]["placement_status"], "missing");
    // The container entity itself no longer says `running`.
    let victim = entity(ledger.as_ref(), &container).await;
    assert_eq!(victim["placement"]["status"], "missing", "{victim}");
    // A periodic pass does not record the same drift again.
    assert!(orch.reconcile(false).await.unwrap().drift.is_empty());
    orch.terminate_container(&orchestrator_identity(), &container, None)
        .await
        .unwrap();
    remove_instance_services(&swarm, &instance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_services_are_recorded_and_removed_only_if_the_operator_asks() {
    let swarm = swarm().await;
    let image = workload_image(&swarm).await;
    let ledger = ledger().await;
    let instance = unique("t-unauth");
    let _cleanup = Cleanup(instance.clone());
    let dir = tempfile::tempdir().unwrap();
    let orch = orchestrator(
        ledger.clone(),
        swarm.clone(),
        &dir.path().join("journal.redb"),
        config(&instance),
    );
    bind_device(&orch, &swarm).await;
    // Services made to look like TOM's, that no PLACE transaction authorised.
    let rogue = |name: String, container: &str| ServiceRequest {
        name,
        image: image.clone(),
        device_id: DEVICE.into(),
        labels: [
            (LABEL_CONTAINER.to_owned(), container.to_owned()),
            (LABEL_AUTHORISING_TX.to_owned(), "forged".to_owned()),
            (LABEL_GATEWAY.to_owned(), instance.clone()),
        ]
        .into(),
        args: vec![],
        env: vec![],
        mounts: vec![],
        host_network: false,
    };
    let kept = swarm
        .create_service(&rogue(unique("rogue-kept"), "nobody-1"))
        .await
        .unwrap();

    let report = orch.reconcile(false).await.unwrap();
    assert_eq!(report.drift.len(), 1, "{report:?}");
    assert!(
        report.drift[0]
            .description
            .contains("without authorisation"),
        "{report:?}"
    );
    assert!(
        report.drift[0]
            .description
            .contains("no container \"nobody-1\""),
        "{report:?}"
    );
    assert!(
        report.drift[0].action_taken.starts_with("none"),
        "{report:?}"
    );
    assert!(
        swarm
            .tom_services()
            .await
            .unwrap()
            .iter()
            .any(|s| s.id == kept),
        "left running as the operator chose"
    );

    let removed = swarm
        .create_service(&rogue(unique("rogue-removed"), "nobody-2"))
        .await
        .unwrap();
    // With removal on, every unauthorised service still running goes, including the one
    // reported while removal was off; each removal is recorded once.
    let report = orch.reconcile(true).await.unwrap();
    assert_eq!(report.drift.len(), 2, "{report:?}");
    for drift in &report.drift {
        assert_eq!(drift.action_taken, "removed the service");
        let recorded = record(ledger.as_ref(), &drift.drift_tx).await;
        assert_eq!(recorded["body"]["action_taken"], "removed the service");
    }
    assert!(
        report
            .drift
            .iter()
            .any(|d| d.description.contains(&kept) && d.description.contains("reported earlier")),
        "{report:?}"
    );
    assert!(!swarm
        .tom_services()
        .await
        .unwrap()
        .iter()
        .any(|s| s.id == kept));
    assert!(
        orch.reconcile(true).await.unwrap().drift.is_empty(),
        "each removal recorded once"
    );
    assert!(
        !swarm
            .tom_services()
            .await
            .unwrap()
            .iter()
            .any(|s| s.id == removed),
        "removed"
    );
    remove_instance_services(&swarm, &instance).await;
    let _ = ledger.describe();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_that_dies_after_running_is_recorded_as_drift() {
    let swarm = swarm().await;
    let image = workload_image(&swarm).await;
    let ledger = ledger().await;
    let instance = unique("t-dies");
    let _cleanup = Cleanup(instance.clone());
    let dir = tempfile::tempdir().unwrap();
    let orch = orchestrator(
        ledger.clone(),
        swarm.clone(),
        &dir.path().join("journal.redb"),
        config(&instance),
    );
    bind_device(&orch, &swarm).await;
    let container = unique("mortal");
    identify_container(ledger.as_ref(), &container, &image, None).await;
    let workload = tom_gateway::orchestration::Workload {
        args: vec!["crash".into(), "--after-ms".into(), "1500".into()],
        ..Default::default()
    };
    let placed = orch
        .place_with(&orchestrator_identity(), &container, DEVICE, &workload)
        .await
        .unwrap();
    assert_eq!(
        entity(ledger.as_ref(), &container).await["placement"]["status"],
        "running"
    );

    // It fails, the swarm retries it a few times, then gives up: reconciliation notices.
    let drift = wait::until(
        "drift recorded for the dead workload",
        Duration::from_secs(60),
        || async {
            orch.reconcile(false)
                .await
                .unwrap()
                .drift
                .into_iter()
                .next()
        },
    )
    .await;
    assert_eq!(drift.container_id.as_deref(), Some(container.as_str()));
    assert!(drift.description.contains("no running task"), "{drift:?}");
    assert_eq!(
        entity(ledger.as_ref(), &container).await["placement"]["status"],
        "stopped",
        "the entity itself no longer claims it runs"
    );
    assert!(
        drift.description.contains(&placed.service_name),
        "{drift:?}"
    );
    assert_eq!(
        record(ledger.as_ref(), &drift.drift_tx).await["kind"],
        "DRIFT"
    );
    assert!(
        orch.reconcile(false).await.unwrap().drift.is_empty(),
        "recorded once"
    );
    orch.terminate_container(&orchestrator_identity(), &container, None)
        .await
        .unwrap();
    remove_instance_services(&swarm, &instance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_the_place_tx_id_was_journalled_is_found_on_the_ledger_and_rolled_back() {
    let Restarted {
        ledger,
        swarm,
        container,
        instance,
        recovered,
        orch,
        _dir,
        _cleanup,
    } = crash_at(Failpoint::Submitted).await;
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(
        recovered[0].resolution,
        Resolution::RolledBack,
        "{recovered:?}"
    );
    let state = entity(ledger.as_ref(), &container).await;
    assert!(state["placement"].is_null(), "{state}");
    assert!(
        state["last_failed_placement"]["detail"]
            .as_str()
            .unwrap()
            .contains("rolled back"),
        "{state}"
    );
    assert!(services_of(swarm.as_ref(), &container).await.is_empty());
    assert!(orch.journal().open_actions().unwrap().is_empty());
    remove_instance_services(&swarm, &instance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_leave_tx_is_finished_at_restart() {
    let swarm = swarm().await;
    let image = workload_image(&swarm).await;
    let ledger = ledger().await;
    let instance = unique("t-leave");
    let _cleanup = Cleanup(instance.clone());
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.redb");
    let container = unique("leaver");
    identify_container(ledger.as_ref(), &container, &image, None).await;
    let reached = Arc::new(tokio::sync::Notify::new());
    let signal = reached.clone();
    let hook: tom_gateway::orchestration::PauseHook = Arc::new(move |at| {
        let freeze = at == Failpoint::Left;
        if freeze {
            signal.notify_one();
        }
        freeze
    });
    let orch = Arc::new(
        orchestrator(ledger.clone(), swarm.clone(), &journal, config(&instance))
            .with_pause_hook(hook),
    );
    bind_device(&orch, &swarm).await;
    orch.place(&orchestrator_identity(), &container, DEVICE)
        .await
        .unwrap();
    let running = orch.clone();
    let c = container.clone();
    let task = tokio::spawn(async move {
        running
            .terminate_container(&orchestrator_identity(), &c, Some("retired"))
            .await
    });
    tokio::time::timeout(Duration::from_secs(60), reached.notified())
        .await
        .expect("the termination reached the crash point");
    task.abort();
    let _ = task.await;
    drop(orch);
    // The leave committed, the service still runs: the ledger and the swarm disagree until restart.
    assert_eq!(entity(ledger.as_ref(), &container).await["state"], "left");
    assert_eq!(services_of(swarm.as_ref(), &container).await.len(), 1);

    let restarted = orchestrator(ledger.clone(), swarm.clone(), &journal, config(&instance));
    let recovered = restarted.recover().await.unwrap();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(
        recovered[0].resolution,
        Resolution::Finished,
        "{recovered:?}"
    );
    assert!(
        services_of(swarm.as_ref(), &container).await.is_empty(),
        "the service was removed at restart"
    );
    let outcome = record(ledger.as_ref(), recovered[0].outcome_tx.as_ref().unwrap()).await;
    assert_eq!(outcome["body"]["action"], "terminate");
    assert_eq!(outcome["body"]["outcome"], "removed");
    assert!(
        outcome["body"]["detail"]
            .as_str()
            .unwrap()
            .contains("completed after a gateway restart"),
        "{outcome}"
    );
    assert!(restarted.journal().tracked().unwrap().is_empty());
    remove_instance_services(&swarm, &instance).await;
}
