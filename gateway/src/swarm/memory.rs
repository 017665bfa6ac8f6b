//! A faithful in-memory [`SwarmDriver`], for tests of what one real node cannot show: several
//! nodes and devices, a node going down or leaving the swarm, a node that joins unproved,
//! re-placing a container on another device.
//!
//! It keeps Swarm's rules that the orchestrator relies on: service names are unique; a task is
//! scheduled only on a ready, active node whose labels satisfy the `tom.device` constraint
//! (otherwise it stays pending, as Swarm reports "no suitable node"); a task of an image the
//! node does not have is rejected with the engine's "No such image" wording; draining a node or
//! losing it shuts its tasks down; every node change is an event. It runs no containers, but
//! reports one per running task; a removed service's containers are gone at once, unless
//! [`MemorySwarm::keep_containers_on_remove`] makes them linger as a container that will not
//! stop does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use futures::stream::{BoxStream, StreamExt};
use tokio::sync::broadcast;

use super::{
    Availability, NodeEvent, NodeInfo, ServiceContainer, ServiceInfo, ServiceRequest, SwarmDriver,
    SwarmError, TaskInfo, TaskPhase, LABEL_CONTAINER, LABEL_DEVICE,
};

#[derive(Default)]
struct State {
    images: BTreeSet<String>,
    /// Service id → (request, tasks newest first).
    services: BTreeMap<String, (ServiceRequest, Vec<TaskInfo>)>,
    nodes: BTreeMap<String, NodeInfo>,
    next_id: u64,
    /// Whether a removed service's containers stay behind.
    keep_on_remove: bool,
    /// Removed service id → the containers it left behind.
    lingering: BTreeMap<String, Vec<ServiceContainer>>,
}

/// The container a running task stands for.
fn task_containers(tasks: &[TaskInfo]) -> Vec<ServiceContainer> {
    tasks
        .iter()
        .filter(|t| t.phase == TaskPhase::Running)
        .map(|t| ServiceContainer {
            id: format!("ctr-{}", t.id),
            state: "running".into(),
        })
        .collect()
}

/// An in-memory swarm.
pub struct MemorySwarm {
    // A std Mutex: every use is a short synchronous section, never held across an await.
    state: Mutex<State>,
    events: broadcast::Sender<NodeEvent>,
}

impl Default for MemorySwarm {
    fn default() -> Self {
        MemorySwarm {
            state: Mutex::new(State::default()),
            events: broadcast::channel(256).0,
        }
    }
}

fn poisoned() -> SwarmError {
    SwarmError::Unavailable("in-memory swarm state poisoned".into())
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:04}", self.next_id)
    }

    /// Swarm's scheduler, reduced to TOM's constraint: a ready, active node labelled with the
    /// service's device.
    fn schedule(&mut self, service_id: &str) {
        let Some((request, tasks)) = self.services.get(service_id) else {
            return;
        };
        if tasks
            .iter()
            .any(|t| matches!(t.phase, TaskPhase::Running | TaskPhase::Pending))
        {
            return;
        }
        let node = self
            .nodes
            .values()
            .find(|n| {
                n.is_up()
                    && n.availability == Availability::Active
                    && n.device_id() == Some(request.device_id.as_str())
            })
            .map(|n| n.id.clone());
        let (phase, state, message, error) = match &node {
            None => (
                TaskPhase::Pending,
                "pending",
                format!(
                    "no suitable node (scheduling constraints not satisfied on {} nodes)",
                    self.nodes.len()
                ),
                None,
            ),
            Some(_) if self.images.contains(&request.image) => {
                (TaskPhase::Running, "running", "started".to_owned(), None)
            }
            Some(_) => (
                TaskPhase::Failed,
                "rejected",
                "preparing".to_owned(),
                Some(format!("No such image: {}", request.image)),
            ),
        };
        let task_id = self.id("task");
        let task = TaskInfo {
            id: task_id,
            phase,
            state: state.into(),
            message,
            error,
            node_id: node,
            container_id: None,
        };
        if let Some((_, tasks)) = self.services.get_mut(service_id) {
            tasks.insert(0, task);
        }
    }

    /// Shut down the running tasks on `node_id`, then let the scheduler try again.
    fn evict(&mut self, node_id: &str) {
        let ids: Vec<String> = self.services.keys().cloned().collect();
        for id in ids {
            if let Some((_, tasks)) = self.services.get_mut(&id) {
                for task in tasks.iter_mut().filter(|t| {
                    t.node_id.as_deref() == Some(node_id) && t.phase == TaskPhase::Running
                }) {
                    task.phase = TaskPhase::Stopped;
                    task.state = "shutdown".into();
                }
            }
            self.schedule(&id);
        }
    }

    fn reschedule_pending(&mut self) {
        let ids: Vec<String> = self.services.keys().cloned().collect();
        for id in ids {
            if let Some((_, tasks)) = self.services.get_mut(&id) {
                tasks.retain(|t| t.phase != TaskPhase::Pending);
            }
            self.schedule(&id);
        }
    }
}

impl MemorySwarm {
    pub fn new() -> Self {
        Self::default()
    }

    /// Make an image present on every node.
    pub fn add_image(&self, image_id: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.images.insert(image_id.to_owned());
        }
    }

    /// From now on, a removed service's containers stay on the engine (`true`), as a container
    /// that ignores its stop signal would, or vanish with it (`false`, the default).
    pub fn keep_containers_on_remove(&self, keep: bool) {
        if let Ok(mut state) = self.state.lock() {
            state.keep_on_remove = keep;
        }
    }

    fn emit(&self, node_id: &str, action: &str) {
        let _ = self.events.send(NodeEvent {
            node_id: node_id.to_owned(),
            action: action.to_owned(),
            attributes: BTreeMap::new(),
        });
    }

    /// How many node-event streams are open: lets a test wait until a watcher listens
    /// instead of sleeping for a guess.
    pub fn node_event_subscribers(&self) -> usize {
        self.events.receiver_count()
    }

    /// A node joins the swarm (ready, active, unlabelled).
    pub fn join_node(&self, node_id: &str, hostname: &str) {
        if let Ok(mut state) = self.state.lock() {
            let node = NodeInfo {
                id: node_id.to_owned(),
                hostname: hostname.to_owned(),
                labels: BTreeMap::new(),
                availability: Availability::Active,
                state: "ready".into(),
            };
            state.nodes.insert(node_id.to_owned(), node);
        }
        self.emit(node_id, "create");
    }

    /// The node's state as the managers see it (`ready`, `down`, `disconnected`).
    pub fn set_node_state(&self, node_id: &str, node_state: &str) {
        if let Ok(mut state) = self.state.lock() {
            if let Some(node) = state.nodes.get_mut(node_id) {
                node.state = node_state.to_owned();
            }
            if node_state != "ready" {
                state.evict(node_id);
            } else {
                state.reschedule_pending();
            }
        }
        self.emit(node_id, "update");
    }

    /// The node leaves the swarm (`docker node rm`).
    pub fn remove_node(&self, node_id: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.nodes.remove(node_id);
            state.evict(node_id);
        }
        self.emit(node_id, "remove");
    }
}

#[async_trait::async_trait]
impl SwarmDriver for MemorySwarm {
    async fn create_service(&self, request: &ServiceRequest) -> Result<String, SwarmError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        if state.services.values().any(|(r, _)| r.name == request.name) {
            return Err(SwarmError::Engine {
                operation: "service create".into(),
                status: 409,
                message: format!("rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {} already exists", request.name),
            });
        }
        let id = state.id("svc");
        state
            .services
            .insert(id.clone(), (request.clone(), Vec::new()));
        state.schedule(&id);
        Ok(id)
    }

    async fn service_tasks(&self, service: &str) -> Result<Vec<TaskInfo>, SwarmError> {
        let state = self.state.lock().map_err(|_| poisoned())?;
        Ok(state
            .services
            .iter()
            .find(|(id, (r, _))| *id == service || r.name == service)
            .map(|(_, (_, tasks))| tasks.clone())
            .unwrap_or_default())
    }

    async fn remove_service(&self, service: &str) -> Result<bool, SwarmError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        let id = state
            .services
            .iter()
            .find(|(id, (r, _))| *id == service || r.name == service)
            .map(|(id, _)| id.clone());
        let Some(id) = id else {
            return Ok(false);
        };
        if let Some((_, tasks)) = state.services.remove(&id) {
            if state.keep_on_remove {
                let left = task_containers(&tasks);
                state.lingering.insert(id, left);
            }
        }
        Ok(true)
    }

    async fn service_containers(
        &self,
        service_id: &str,
    ) -> Result<Vec<ServiceContainer>, SwarmError> {
        let state = self.state.lock().map_err(|_| poisoned())?;
        Ok(match state.services.get(service_id) {
            Some((_, tasks)) => task_containers(tasks),
            None => state.lingering.get(service_id).cloned().unwrap_or_default(),
        })
    }

    async fn tom_services(&self) -> Result<Vec<ServiceInfo>, SwarmError> {
        let mut services = self.all_services().await?;
        services.retain(|s| s.labels.contains_key(LABEL_CONTAINER));
        Ok(services)
    }

    async fn all_services(&self) -> Result<Vec<ServiceInfo>, SwarmError> {
        let state = self.state.lock().map_err(|_| poisoned())?;
        Ok(state
            .services
            .iter()
            .map(|(id, (r, _))| ServiceInfo {
                id: id.clone(),
                name: r.name.clone(),
                image: r.image.clone(),
                labels: r.labels.clone(),
                replicas: Some(1),
                constraints: vec![super::device_constraint(&r.device_id)],
                mounts: r.mounts.clone(),
                networks: if r.host_network {
                    vec!["host".to_owned()]
                } else {
                    vec![]
                },
            })
            .collect())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, SwarmError> {
        Ok(self
            .state
            .lock()
            .map_err(|_| poisoned())?
            .nodes
            .values()
            .cloned()
            .collect())
    }

    async fn set_node_label(
        &self,
        node_id: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), SwarmError> {
        {
            let mut state = self.state.lock().map_err(|_| poisoned())?;
            let node = state
                .nodes
                .get_mut(node_id)
                .ok_or_else(|| SwarmError::NotFound {
                    kind: "node",
                    id: node_id.to_owned(),
                })?;
            match value {
                Some(v) => node.labels.insert(key.to_owned(), v.to_owned()),
                None => node.labels.remove(key),
            };
            if key == LABEL_DEVICE {
                state.reschedule_pending();
            }
        }
        self.emit(node_id, "update");
        Ok(())
    }

    async fn set_node_availability(
        &self,
        node_id: &str,
        availability: Availability,
    ) -> Result<(), SwarmError> {
        {
            let mut state = self.state.lock().map_err(|_| poisoned())?;
            let node = state
                .nodes
                .get_mut(node_id)
                .ok_or_else(|| SwarmError::NotFound {
                    kind: "node",
                    id: node_id.to_owned(),
                })?;
            node.availability = availability;
            if availability == Availability::Drain {
                state.evict(node_id);
            }
        }
        self.emit(node_id, "update");
        Ok(())
    }

    fn node_events(&self) -> BoxStream<'static, Result<NodeEvent, SwarmError>> {
        tokio_stream::wrappers::BroadcastStream::new(self.events.subscribe())
            .map(|event| {
                event.map_err(|e| SwarmError::Unavailable(format!("event stream lagged: {e}")))
            })
            .boxed()
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>, SwarmError> {
        let state = self.state.lock().map_err(|_| poisoned())?;
        Ok(state.images.get(reference).cloned())
    }

    fn describe(&self) -> String {
        "in-memory swarm".into()
    }
}
