//! [`SwarmDriver`] over a real Docker engine through `bollard`.
//!
//! The engine may be older than bollard's default API version (Debian's 20.10 speaks 1.41), so
//! [`BollardSwarm::connect`] negotiates the version before anything else, and refuses an engine
//! that is not a swarm manager with a message saying how to make it one.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    Mount, MountType, NetworkAttachmentConfig, NodeSpecAvailabilityEnum, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{
    EventsOptions, ListContainersOptions, ListServicesOptions, ListTasksOptions, UpdateNodeOptions,
};
use bollard::Docker;
use futures::stream::{BoxStream, StreamExt};

use super::{
    Availability, BindMount, NodeEvent, NodeInfo, ServiceContainer, ServiceInfo, ServiceRequest,
    SwarmDriver, SwarmError, TaskInfo, TaskPhase, LABEL_CONTAINER,
};

/// The label Swarm puts on every container of a service's tasks.
pub const SWARM_SERVICE_ID_LABEL: &str = "com.docker.swarm.service.id";

/// A Docker engine that is a swarm manager.
#[derive(Clone)]
pub struct BollardSwarm {
    docker: Docker,
    description: String,
}

fn engine_error(operation: &str, e: bollard::errors::Error) -> SwarmError {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => SwarmError::Engine {
            operation: operation.to_owned(),
            status: status_code,
            message,
        },
        other => SwarmError::Unavailable(format!("{operation}: {other}")),
    }
}

fn not_found_or(
    kind: &'static str,
    id: &str,
    operation: &str,
    e: bollard::errors::Error,
) -> SwarmError {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        } => SwarmError::NotFound {
            kind,
            id: id.to_owned(),
        },
        other => engine_error(operation, other),
    }
}

impl BollardSwarm {
    /// Connect to the local engine (`DOCKER_HOST` or the default socket), negotiate the API
    /// version, and check that the engine is an active swarm manager.
    pub async fn connect() -> Result<Self, SwarmError> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| {
            SwarmError::Unavailable(format!("cannot connect to the docker engine: {e}"))
        })?;
        Self::from_docker(docker).await
    }

    /// Use an already configured client (still negotiates and checks).
    pub async fn from_docker(docker: Docker) -> Result<Self, SwarmError> {
        let docker = docker.negotiate_version().await.map_err(|e| {
            SwarmError::Unavailable(format!("no docker engine answers on the local socket (is it running, and may this user use it?): {e}"))
        })?;
        let info = docker.info().await.map_err(|e| engine_error("info", e))?;
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm
            .local_node_state
            .map(|s| s.to_string())
            .unwrap_or_default();
        if state != "active" || swarm.control_available != Some(true) {
            return Err(SwarmError::Unavailable(format!(
                "the docker engine is not an active swarm manager (swarm state: {state:?}); run scripts/setup/20-docker-swarm.sh or 'docker swarm init'"
            )));
        }
        let version = docker.client_version();
        let description = format!(
            "docker {} (API {}.{}), swarm node {}",
            info.server_version.unwrap_or_default(),
            version.major_version,
            version.minor_version,
            swarm.node_id.unwrap_or_default()
        );
        Ok(BollardSwarm {
            docker,
            description,
        })
    }

    async fn services(&self, label: Option<&str>) -> Result<Vec<ServiceInfo>, SwarmError> {
        let filters = label.map(|l| HashMap::from([("label".to_owned(), vec![l.to_owned()])]));
        let services = self
            .docker
            .list_services(Some(ListServicesOptions {
                filters,
                status: None,
            }))
            .await
            .map_err(|e| engine_error("service list", e))?;
        let mut network_names: HashMap<String, String> = HashMap::new();
        let mut out = Vec::with_capacity(services.len());
        for s in services {
            let targets: Vec<String> = s
                .spec
                .as_ref()
                .and_then(|spec| spec.task_template.as_ref())
                .and_then(|t| t.networks.as_ref())
                .map(|n| n.iter().filter_map(|n| n.target.clone()).collect())
                .unwrap_or_default();
            for target in targets {
                if network_names.contains_key(&target) {
                    continue;
                }
                // The spec names a network by its swarm id once created; report its name.
                let name = match self
                    .docker
                    .inspect_network(
                        &target,
                        None::<bollard::query_parameters::InspectNetworkOptions>,
                    )
                    .await
                {
                    Ok(n) => n.name.unwrap_or_else(|| target.clone()),
                    Err(_) => target.clone(),
                };
                network_names.insert(target, name);
            }
            out.push(s);
        }
        Ok(out
            .into_iter()
            .map(|s| {
                let spec = s.spec.unwrap_or_default();
                let task = spec.task_template.unwrap_or_default();
                let container = task.container_spec.unwrap_or_default();
                let mounts = container
                    .mounts
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| BindMount {
                        source: m.source.unwrap_or_default(),
                        target: m.target.unwrap_or_default(),
                        read_only: m.read_only.unwrap_or(false),
                    })
                    .collect();
                ServiceInfo {
                    id: s.id.unwrap_or_default(),
                    name: spec.name.unwrap_or_default(),
                    image: container.image.unwrap_or_default(),
                    labels: sorted(spec.labels),
                    replicas: spec
                        .mode
                        .and_then(|m| m.replicated)
                        .and_then(|r| r.replicas)
                        .map(|r| r.max(0) as u64),
                    constraints: task
                        .placement
                        .and_then(|p| p.constraints)
                        .unwrap_or_default(),
                    mounts,
                    networks: task
                        .networks
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|n| n.target)
                        .map(|t| network_names.get(&t).cloned().unwrap_or(t))
                        .collect(),
                }
            })
            .collect())
    }

    /// The underlying client, for callers (benchmarks, tests) that need plain Docker calls.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }
}

fn task_phase(state: Option<TaskState>) -> TaskPhase {
    match state {
        Some(TaskState::RUNNING) => TaskPhase::Running,
        Some(TaskState::FAILED | TaskState::REJECTED) => TaskPhase::Failed,
        Some(
            TaskState::COMPLETE | TaskState::SHUTDOWN | TaskState::ORPHANED | TaskState::REMOVE,
        ) => TaskPhase::Stopped,
        _ => TaskPhase::Pending,
    }
}

fn availability(a: Option<NodeSpecAvailabilityEnum>) -> Availability {
    match a {
        Some(NodeSpecAvailabilityEnum::PAUSE) => Availability::Pause,
        Some(NodeSpecAvailabilityEnum::DRAIN) => Availability::Drain,
        _ => Availability::Active,
    }
}

fn sorted(map: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    map.unwrap_or_default().into_iter().collect()
}

/// The spec of one TOM service: one replica, pinned image, constrained to the device's node.
pub fn service_spec(request: &ServiceRequest) -> ServiceSpec {
    let labels: HashMap<String, String> = request.labels.clone().into_iter().collect();
    let mounts = request
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: Some(m.source.clone()),
            typ: Some(MountType::BIND),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect::<Vec<_>>();
    ServiceSpec {
        name: Some(request.name.clone()),
        labels: Some(labels.clone()),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(request.image.clone()),
                labels: Some(labels),
                args: (!request.args.is_empty()).then(|| request.args.clone()),
                env: (!request.env.is_empty()).then(|| request.env.clone()),
                mounts: (!mounts.is_empty()).then_some(mounts),
                // An init as PID 1 forwards SIGTERM: a workload without its own signal
                // handler would otherwise ignore it (PID 1 gets no default signal actions),
                // and every removal would wait out the 10 s stop grace period, then kill.
                init: Some(true),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec![super::device_constraint(&request.device_id)]),
                ..Default::default()
            }),
            // A workload that fails is retried a few times, then left failed for TOM to see.
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
                delay: Some(2_000_000_000),
                max_attempts: Some(3),
                window: None,
            }),
            networks: request.host_network.then(|| {
                vec![NetworkAttachmentConfig {
                    target: Some("host".into()),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl SwarmDriver for BollardSwarm {
    async fn create_service(&self, request: &ServiceRequest) -> Result<String, SwarmError> {
        let created = self
            .docker
            .create_service(service_spec(request), None)
            .await
            .map_err(|e| engine_error("service create", e))?;
        created.id.ok_or_else(|| {
            SwarmError::Invalid(format!(
                "the engine created service {} without returning its id",
                request.name
            ))
        })
    }

    async fn service_tasks(&self, service: &str) -> Result<Vec<TaskInfo>, SwarmError> {
        let filters = HashMap::from([("service".to_owned(), vec![service.to_owned()])]);
        let mut tasks = self
            .docker
            .list_tasks(Some(ListTasksOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| not_found_or("service", service, "task list", e))?;
        // Newest first: the version index grows with every change the managers make.
        tasks.sort_by_key(|t| {
            std::cmp::Reverse(t.version.as_ref().and_then(|v| v.index).unwrap_or(0))
        });
        Ok(tasks
            .into_iter()
            .map(|t| {
                let status = t.status.unwrap_or_default();
                TaskInfo {
                    id: t.id.unwrap_or_default(),
                    phase: task_phase(status.state),
                    state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                    message: status.message.unwrap_or_default(),
                    error: status.err.filter(|e| !e.is_empty()),
                    node_id: t.node_id,
                    container_id: status.container_status.and_then(|c| c.container_id),
                }
            })
            .collect())
    }

    async fn remove_service(&self, service: &str) -> Result<bool, SwarmError> {
        match self.docker.delete_service(service).await {
            Ok(()) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(engine_error("service remove", e)),
        }
    }

    async fn service_containers(
        &self,
        service_id: &str,
    ) -> Result<Vec<ServiceContainer>, SwarmError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{SWARM_SERVICE_ID_LABEL}={service_id}")],
        )]);
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| engine_error("container list", e))?;
        Ok(containers
            .into_iter()
            .map(|c| ServiceContainer {
                id: c.id.unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            })
            .collect())
    }

    async fn tom_services(&self) -> Result<Vec<ServiceInfo>, SwarmError> {
        self.services(Some(LABEL_CONTAINER)).await
    }

    async fn all_services(&self) -> Result<Vec<ServiceInfo>, SwarmError> {
        self.services(None).await
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, SwarmError> {
        let nodes = self
            .docker
            .list_nodes(None)
            .await
            .map_err(|e| engine_error("node list", e))?;
        Ok(nodes
            .into_iter()
            .map(|n| {
                let spec = n.spec.unwrap_or_default();
                NodeInfo {
                    id: n.id.unwrap_or_default(),
                    hostname: n.description.and_then(|d| d.hostname).unwrap_or_default(),
                    labels: sorted(spec.labels),
                    availability: availability(spec.availability),
                    state: n
                        .status
                        .and_then(|s| s.state)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "unknown".into()),
                }
            })
            .collect())
    }

    async fn set_node_label(
        &self,
        node_id: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), SwarmError> {
        let node = self
            .docker
            .inspect_node(node_id)
            .await
            .map_err(|e| not_found_or("node", node_id, "node inspect", e))?;
        let version = node.version.and_then(|v| v.index).unwrap_or(0) as i64;
        let mut spec = node.spec.unwrap_or_default();
        let labels = spec.labels.get_or_insert_with(HashMap::new);
        match value {
            Some(v) => labels.insert(key.to_owned(), v.to_owned()),
            None => labels.remove(key),
        };
        self.docker
            .update_node(node_id, spec, UpdateNodeOptions { version })
            .await
            .map_err(|e| engine_error("node update", e))
    }

    async fn set_node_availability(
        &self,
        node_id: &str,
        availability: Availability,
    ) -> Result<(), SwarmError> {
        let node = self
            .docker
            .inspect_node(node_id)
            .await
            .map_err(|e| not_found_or("node", node_id, "node inspect", e))?;
        let version = node.version.and_then(|v| v.index).unwrap_or(0) as i64;
        let mut spec = node.spec.unwrap_or_default();
        spec.availability = Some(match availability {
            Availability::Active => NodeSpecAvailabilityEnum::ACTIVE,
            Availability::Pause => NodeSpecAvailabilityEnum::PAUSE,
            Availability::Drain => NodeSpecAvailabilityEnum::DRAIN,
        });
        self.docker
            .update_node(node_id, spec, UpdateNodeOptions { version })
            .await
            .map_err(|e| engine_error("node update", e))
    }

    fn node_events(&self) -> BoxStream<'static, Result<NodeEvent, SwarmError>> {
        let filters = HashMap::from([("type".to_owned(), vec!["node".to_owned()])]);
        let options = EventsOptions {
            since: None,
            until: None,
            filters: Some(filters),
        };
        self.docker
            .events(Some(options))
            .map(|event| {
                let event = event.map_err(|e| engine_error("event stream", e))?;
                let actor = event.actor.unwrap_or_default();
                Ok(NodeEvent {
                    node_id: actor.id.unwrap_or_default(),
                    action: event.action.unwrap_or_default(),
                    attributes: sorted(actor.attributes),
                })
            })
            .boxed()
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>, SwarmError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(engine_error("image inspect", e)),
        }
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}
