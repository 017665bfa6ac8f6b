//! Building and running the gateway's HTTP service: the shared state, the router (from
//! [`crate::api::ROUTES`]), the metrics middleware, and a server that runs on any listener until
//! a shutdown future resolves, so `tom serve`, the tests and the benchmark all run the same app
//! (tests bind port 0).
//!
//! The state holds no mutable data of its own: the ledger is the only state, identities are
//! read-only once loaded, and the metrics have their own short lock.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::api::actions::{ContainerActions, LedgerOnly};
use crate::api::metrics::Metrics;
use crate::api::{handlers, BODY_LIMIT, ROUTES};
use crate::identities::{Identity, IdentityStore, DEV_MSP_ID};
use crate::ledger::{Ledger, LedgerError};

/// What every handler can reach. Cheap to clone (all `Arc`s).
#[derive(Clone)]
pub struct AppState {
    pub ledger: Arc<dyn Ledger>,
    pub identities: Arc<IdentityStore>,
    pub actions: Arc<dyn ContainerActions>,
    pub metrics: Arc<Metrics>,
    /// Flips to true when the server starts shutting down (ends event streams).
    shutdown: Arc<watch::Sender<bool>>,
}

impl AppState {
    /// A gateway without a container orchestrator ([`LedgerOnly`]).
    pub fn new(ledger: Arc<dyn Ledger>, identities: IdentityStore) -> AppState {
        AppState {
            ledger,
            identities: Arc::new(identities),
            actions: Arc::new(LedgerOnly),
            metrics: Arc::default(),
            shutdown: Arc::new(watch::channel(false).0),
        }
    }

    /// Use `actions` (e.g. the Swarm orchestrator) for devices, placements and removals.
    pub fn with_actions(mut self, actions: Arc<dyn ContainerActions>) -> AppState {
        self.actions = actions;
        self
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// Count every request by route template (not raw path, which would let callers create
/// unbounded label sets) and status.
async fn count_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    metrics.request(&method, &route, response.status().as_u16());
    response
}

/// The router: every route of [`ROUTES`], a 1 MiB body limit, JSON 404/405s, request metrics.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        router = router.route(route.path, crate::api::method_router(route));
    }
    router
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::wrong_method)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// Serve on `listener` until `shutdown` resolves, then stop accepting, end event streams and
/// let in-flight requests finish (each is one ledger transaction, so none is cut half-way).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let signal = state.shutdown.clone();
    let app = router(state);
    // Responses are small and latency matters more than packet count: without TCP_NODELAY a
    // response split over two writes can wait for the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            signal.send_replace(true);
        })
        .await
}

/// A gateway running in this process (tests, the demo, the benchmark).
pub struct Running {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shut down gracefully and wait for it.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Start the app on `addr` (use `127.0.0.1:0` for a free port) in a background task.
pub async fn spawn(addr: &str, state: AppState) -> std::io::Result<Running> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    // The server runs in its own task so the caller can drive requests against it.
    let task = tokio::spawn(serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Ok(Running { addr, stop, task })
}

/// Make sure the development organisation is registered on the ledger: on first start (and on
/// any start after a first start whose registration did not commit), submit `RegisterOrg` as
/// the development admin. Returns whether it registered now.
pub async fn ensure_dev_org(
    ledger: &dyn Ledger,
    admin: &Identity,
    ca_certificate: &str,
) -> Result<bool, LedgerError> {
    if admin.signing.msp_id != DEV_MSP_ID {
        return Ok(false);
    }
    let query = serde_json::json!({ "id": DEV_MSP_ID }).to_string();
    match ledger
        .evaluate(&admin.signing, "GetOrg", query.as_bytes())
        .await
    {
        Ok(_) => return Ok(false),
        Err(LedgerError::Rejected { status: 404, .. }) => {}
        Err(e) => return Err(e),
    }
    let request = tom_contract::requests::RegisterOrg {
        msp_id: DEV_MSP_ID.into(),
        name: "TOM development organisation".into(),
        ca_certificates: vec![ca_certificate.to_owned()],
        policy: Default::default(),
    };
    let argument =
        serde_json::to_vec(&request).map_err(|e| LedgerError::Internal(e.to_string()))?;
    ledger
        .submit(&admin.signing, "RegisterOrg", &argument)
        .await?;
    Ok(true)
}
