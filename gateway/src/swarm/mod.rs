//! The gateway's Docker Swarm port: the few Swarm operations orchestration needs, behind a small
//! trait so the orchestration protocol can be read (and tested) apart from the Docker API.
//!
//! [`docker::BollardSwarm`] implements [`SwarmDriver`] against a real engine;
//! [`memory::MemorySwarm`] is a faithful in-memory one for multi-node tests. Nothing here
//! touches the ledger: deciding *whether* a Swarm action may happen is the orchestrator's job
//! (`crate::orchestration`); this module only carries it out and reports what the engine said.
//!
//! Conventions shared with the orchestrator:
//! * A TOM service carries the labels [`LABEL_CONTAINER`], [`LABEL_AUTHORISING_TX`] and
//!   [`LABEL_DEVICE`]; services without [`LABEL_CONTAINER`] are not TOM's and are never listed.
//! * A device is a Swarm node labelled [`LABEL_DEVICE`]`=<device id>`; a service is constrained
//!   to `node.labels.tom.device==<device id>`, so it can only run on the node that proved to be
//!   that device, and a node that has not proved an identity runs no TOM service.
//!
//! **Pinning by digest without a registry.** The ledger records a container's image as
//! `sha256:<64 hex>`. With a registry that would be the manifest digest and the service image
//! `name@sha256:…`; but a locally built image has no registry digest, and Docker 20.10 will not
//! resolve `name@sha256:<image id>` locally. What it does resolve is the bare image id (the
//! SHA-256 of the image config) used as the image reference: a service with image
//! `sha256:<id>` runs exactly that image on any node that has it, and is rejected with
//! "No such image: sha256:…" on a node that does not (verified on Debian's 20.10.24, API 1.41).
//! So TOM identifies a container with its image *id* as the digest and creates the service with
//! that id as the image: the engine can only run the content the ledger names. (The Docker CLI's
//! "could not be accessed on a registry to record its digest" warning comes from the CLI's
//! registry lookup, which the API does not do.)

pub mod docker;
pub mod memory;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;

/// Service label: the ledger id of the container the service runs.
pub const LABEL_CONTAINER: &str = "tom.container";
/// Service label: the PlaceContainer transaction that authorised the service.
pub const LABEL_AUTHORISING_TX: &str = "tom.authorising-tx";
/// Service and node label: the device id (on a node: the device the node proved to be).
pub const LABEL_DEVICE: &str = "tom.device";
/// Service label: the gateway instance that created the service. A gateway reconciles only its
/// own services, so several gateways (or test runs) can share one swarm.
pub const LABEL_GATEWAY: &str = "tom.gateway";

/// Why a Swarm operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwarmError {
    /// No engine answers, or it is not a swarm manager.
    #[error("docker engine unavailable: {0}")]
    Unavailable(String),
    /// The engine refused the request; `message` is the engine's own words.
    #[error("docker engine refused {operation}: {message}")]
    Engine {
        operation: String,
        status: u16,
        message: String,
    },
    /// The service, task or node does not exist.
    #[error("{kind} {id} does not exist on the swarm")]
    NotFound { kind: &'static str, id: String },
    /// The request cannot be expressed to the engine.
    #[error("invalid swarm request: {0}")]
    Invalid(String),
    /// A removed service's containers were still on the engine when the wait for them ended.
    #[error("service {service} was removed but {} of its containers still exist after {}s: {}", .containers.len(), .waited.as_secs_f64().round(), describe_containers(.containers))]
    ContainersRemain {
        service: String,
        containers: Vec<ServiceContainer>,
        waited: Duration,
    },
}

fn describe_containers(containers: &[ServiceContainer]) -> String {
    containers
        .iter()
        .map(|c| {
            format!(
                "{} ({})",
                c.id.chars().take(12).collect::<String>(),
                c.state
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A container the engine still has for a service, in whatever state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceContainer {
    pub id: String,
    /// The engine's container state (`running`, `exited`, `removing`, …).
    pub state: String,
}

/// A bind mount into a service's container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct BindMount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// Everything needed to create one TOM service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    /// Swarm service name (unique on the swarm).
    pub name: String,
    /// The image reference the engine runs: for TOM, the content digest the ledger recorded.
    pub image: String,
    /// The device (node label) the single replica is constrained to.
    pub device_id: String,
    /// Service labels (TOM's own are added by the orchestrator).
    pub labels: BTreeMap<String, String>,
    /// Arguments after the image's entrypoint.
    pub args: Vec<String>,
    /// `KEY=value` environment entries.
    pub env: Vec<String>,
    pub mounts: Vec<BindMount>,
    /// Attach to the engine's `host` network, so a workload can reach a gateway listening on
    /// the host's loopback address.
    pub host_network: bool,
}

/// A service as the swarm reports it: what reconciliation compares with the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ServiceInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// Replicas of a replicated service (`None`: global mode or not reported).
    pub replicas: Option<u64>,
    /// Placement constraints, as given.
    pub constraints: Vec<String>,
    /// Bind mounts (other mount types are listed with an empty source).
    pub mounts: Vec<BindMount>,
    /// Networks the tasks attach to, by name or id as given in the spec.
    pub networks: Vec<String>,
}

/// The placement constraint TOM gives a device's services.
pub fn device_constraint(device_id: &str) -> String {
    format!("node.labels.{LABEL_DEVICE}=={device_id}")
}

impl ServiceInfo {
    pub fn container_id(&self) -> Option<&str> {
        self.labels.get(LABEL_CONTAINER).map(String::as_str)
    }

    pub fn authorising_tx(&self) -> Option<&str> {
        self.labels.get(LABEL_AUTHORISING_TX).map(String::as_str)
    }

    pub fn gateway(&self) -> Option<&str> {
        self.labels.get(LABEL_GATEWAY).map(String::as_str)
    }
}

/// Where a task is in Swarm's task lifecycle, reduced to what the orchestrator decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskPhase {
    /// new … starting: not yet running, not yet failed.
    Pending,
    Running,
    /// complete, shutdown, orphaned, remove: stopped without an error of its own.
    Stopped,
    /// failed or rejected: the engine could not run it (the task's `error` says why).
    Failed,
}

impl fmt::Display for TaskPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskPhase::Pending => "pending",
            TaskPhase::Running => "running",
            TaskPhase::Stopped => "stopped",
            TaskPhase::Failed => "failed",
        })
    }
}

/// One task of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: String,
    pub phase: TaskPhase,
    /// The engine's state name (`running`, `rejected`, …).
    pub state: String,
    /// The engine's status message and error, as it gave them.
    pub message: String,
    pub error: Option<String>,
    pub node_id: Option<String>,
    pub container_id: Option<String>,
}

/// Node availability, as `docker node update --availability` sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Active,
    Pause,
    Drain,
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Availability::Active => "active",
            Availability::Pause => "pause",
            Availability::Drain => "drain",
        })
    }
}

/// A swarm node: a device candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub availability: Availability,
    /// `ready`, `down`, `disconnected` or `unknown`.
    pub state: String,
}

impl NodeInfo {
    /// The device this node proved to be, if any.
    pub fn device_id(&self) -> Option<&str> {
        self.labels.get(LABEL_DEVICE).map(String::as_str)
    }

    /// Whether the node can run tasks at all.
    pub fn is_up(&self) -> bool {
        self.state == "ready"
    }
}

/// A node event from the engine's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    pub node_id: String,
    /// `create`, `update` or `remove`.
    pub action: String,
    /// The event's attributes (e.g. `state.new`, `availability.new`, `name`).
    pub attributes: BTreeMap<String, String>,
}

/// The Swarm operations the orchestrator uses.
#[async_trait::async_trait]
pub trait SwarmDriver: Send + Sync + 'static {
    /// Create a replicated service with one replica; returns the service id.
    async fn create_service(&self, request: &ServiceRequest) -> Result<String, SwarmError>;

    /// The service's tasks (newest first).
    async fn service_tasks(&self, service: &str) -> Result<Vec<TaskInfo>, SwarmError>;

    /// Remove a service; `Ok(false)` if it did not exist. The engine answers as soon as the
    /// service is gone from the managers' store: its containers stop and are removed
    /// afterwards (see [`SwarmDriver::await_containers_gone`]).
    async fn remove_service(&self, service: &str) -> Result<bool, SwarmError>;

    /// Every container the engine still has for the service `service_id`, running or not.
    /// Found by the container label Swarm sets (`com.docker.swarm.service.id`), not through
    /// the task list: a removed service's tasks leave the task list before their containers
    /// have stopped.
    async fn service_containers(
        &self,
        service_id: &str,
    ) -> Result<Vec<ServiceContainer>, SwarmError>;

    /// Wait until the engine has no container of the (removed) service `service_id` left,
    /// polling every `poll`; after `timeout`, [`SwarmError::ContainersRemain`] names the
    /// service (`name`) and what is left. Removing a service is only the request: the
    /// workload is gone when its containers are.
    async fn await_containers_gone(
        &self,
        service_id: &str,
        name: &str,
        poll: Duration,
        timeout: Duration,
    ) -> Result<(), SwarmError> {
        let started = Instant::now();
        loop {
            let left = self.service_containers(service_id).await?;
            if left.is_empty() {
                return Ok(());
            }
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(SwarmError::ContainersRemain {
                    service: name.to_owned(),
                    containers: left,
                    waited,
                });
            }
            tokio::time::sleep(poll.min(timeout - waited)).await;
        }
    }

    /// Every service carrying [`LABEL_CONTAINER`].
    async fn tom_services(&self) -> Result<Vec<ServiceInfo>, SwarmError>;

    /// Every service on the swarm, TOM-labelled or not.
    async fn all_services(&self) -> Result<Vec<ServiceInfo>, SwarmError>;

    async fn nodes(&self) -> Result<Vec<NodeInfo>, SwarmError>;

    /// Set (`Some`) or remove (`None`) one node label.
    async fn set_node_label(
        &self,
        node_id: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), SwarmError>;

    async fn set_node_availability(
        &self,
        node_id: &str,
        availability: Availability,
    ) -> Result<(), SwarmError>;

    /// Node events from now on. The stream ends if the engine connection drops.
    fn node_events(&self) -> BoxStream<'static, Result<NodeEvent, SwarmError>>;

    /// The local image id (`sha256:…` of the image config) of `reference`, if the engine has it.
    async fn image_id(&self, reference: &str) -> Result<Option<String>, SwarmError>;

    /// A short description for logs (engine and API version).
    fn describe(&self) -> String;
}

/// The Swarm service name TOM uses for a container's placement: readable, unique per placement
/// (so a re-placement can start before the old service is removed) and within Swarm's 63
/// characters.
pub fn service_name(container_id: &str, authorising_tx: &str) -> String {
    let tx: String = authorising_tx.chars().take(12).collect();
    let room = 63 - "tom--".len() - tx.len();
    let id: String = container_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(room)
        .collect();
    format!("tom-{id}-{tx}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_swarm_safe_and_bounded() {
        let tx = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            service_name("analyser-1", tx),
            "tom-analyser-1-0123456789ab"
        );
        assert_eq!(service_name("a_b.c", tx), "tom-a-b-c-0123456789ab");
        let long = "x".repeat(128);
        let name = service_name(&long, tx);
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("-0123456789ab"));
    }
}
