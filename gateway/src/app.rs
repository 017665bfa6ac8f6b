//! Building and running the gateway's HTTP service: the shared state, the router (from
//! [`crate::api::ROUTES`]), the metrics middleware, and a server that runs on any listener until
//! a shutdown future resolves, so `tom serve`, the tests and the benchmark all run the same app
//! (tests bind port 0).
//!
//! The state every handler reaches, [`AppState`], and its methods live in
//! [`crate::api::state`], below the handlers: this module depends on the API, never the API on
//! it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tom_contract::requests::{ById, GetOrg, RegisterOrg};
use tom_contract::transaction::Transaction;

use crate::api::metrics::Metrics;
pub use crate::api::state::AppState;
use crate::api::{handlers, BODY_LIMIT, ROUTES};
use crate::identities::{Identity, DEV_MSP_ID};
use crate::ledger::{Ledger, LedgerError};

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

/// Limits that keep slow, idle and too many clients from taking the gateway down. Every field
/// has a documented default (`tom serve --help` shows them as flags).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A request's headers must arrive in full within this long of the server starting to wait
    /// for them, else the connection is closed (slow-header clients). The wait for the next
    /// request on a kept-alive connection counts too. Default 10 s.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed. Default 60 s (the
    /// header-read timeout closes an idle HTTP/1.1 connection sooner; this also covers
    /// connections that have not sent a byte yet).
    pub idle_timeout: Duration,
    /// Connections open at once. At the cap, a new connection closes the longest-idle one (no
    /// request in flight), or is answered 503 and closed if every connection is busy. Always
    /// kept [`FD_RESERVE`] below the process's open-file limit. Default 4096.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

/// File descriptors kept free of connections: the ledger's files, identities, the Docker socket,
/// the journal, and a few accepted sockets on their way to be refused.
pub const FD_RESERVE: u64 = 128;

impl ServeOptions {
    /// [`ServeOptions::max_connections`], lowered to stay [`FD_RESERVE`] below the current soft
    /// open-file limit.
    pub fn effective_max_connections(&self) -> usize {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let by_fds =
            usize::try_from(limit.saturating_sub(FD_RESERVE).max(16)).unwrap_or(usize::MAX);
        self.max_connections.clamp(1, by_fds.max(1))
    }
}

/// Raise the soft open-file limit (RLIMIT_NOFILE) to the hard limit, so the connection cap
/// rather than the kernel decides when connections are refused. Returns the limits before and
/// after (`None` where unlimited).
pub fn raise_nofile_limit() -> std::io::Result<(Option<u64>, Option<u64>)> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    if before.current != before.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: before.maximum,
                maximum: before.maximum,
            },
        )
        .map_err(std::io::Error::from)?;
    }
    Ok((before.current, getrlimit(Resource::Nofile).current))
}

/// Serve on `listener` until `shutdown` resolves, then stop accepting, end event streams and
/// let in-flight requests finish (each is one ledger transaction, so none is cut half-way).
/// Uses [`ServeOptions::default`].
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, ServeOptions::default(), shutdown).await
}

/// One accepted connection, as the accept loop and the idle timer see it.
struct Conn {
    /// Requests whose response has not been sent in full (an event stream counts until it ends).
    in_flight: AtomicUsize,
    /// Milliseconds since the server started at which the connection was last busy.
    last_busy_ms: AtomicU64,
    /// Asks the connection to close once idle (eviction at the cap).
    close: tokio::sync::Notify,
}

/// Every open connection, to pick one to shed when the cap is reached.
struct Conns {
    epoch: Instant,
    next_id: AtomicU64,
    open: std::sync::Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Conns {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn register(&self) -> (u64, Arc<Conn>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            last_busy_ms: AtomicU64::new(self.now_ms()),
            close: tokio::sync::Notify::new(),
        });
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, conn.clone());
        (id, conn)
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
    }

    /// Ask the longest-idle connection to close; false if every connection is busy.
    fn evict_idle(&self) -> bool {
        let open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let victim = open
            .values()
            .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|c| c.last_busy_ms.load(Ordering::Acquire));
        match victim {
            Some(conn) => {
                conn.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Marks a request finished when its response body is done (or dropped).
struct InFlight {
    conn: Arc<Conn>,
    conns: Arc<Conns>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn
            .last_busy_ms
            .store(self.conns.now_ms(), Ordering::Release);
        self.conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that holds its request's [`InFlight`] until it is sent.
struct TrackedBody {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What an over-capacity connection gets before it is closed.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: application/json\r\nretry-after: 1\r\ncontent-length: 92\r\n\r\n{\"error\":\"too many connections\",\"status\":503,\"code\":\"too_many_connections\",\"retryable\":true}";

/// [`serve`] with explicit [`ServeOptions`]: HTTP/1.1 on hyper with a header-read timeout, an
/// idle timeout and a connection cap below the open-file limit, so slow or idle clients cannot
/// starve the others (or `/healthz`).
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let signal = state.clone();
    let app = router(state);
    let max = options.effective_max_connections();
    tracing::info!(
        max_connections = max,
        header_read_timeout_ms = options.header_read_timeout.as_millis() as u64,
        idle_timeout_ms = options.idle_timeout.as_millis() as u64,
        "connection limits"
    );
    let permits = Arc::new(tokio::sync::Semaphore::new(max));
    let conns = Arc::new(Conns {
        epoch: Instant::now(),
        next_id: AtomicU64::new(0),
        open: std::sync::Mutex::default(),
    });
    let (stop_conns, stopping) = watch::channel(false);
    let options = Arc::new(options);
    tokio::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before it was accepted:
                    // shed an idle connection and go on.
                    tracing::warn!(error = %e, "accept failed");
                    conns.evict_idle();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        // Responses are small and latency matters more than packet count: without TCP_NODELAY a
        // response split over two writes can wait for the client's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) if conns.evict_idle() => {
                // The evicted connection is idle, so it closes at once.
                tokio::time::timeout(Duration::from_secs(1), permits.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        };
        let Some(permit) = permit else {
            tracing::warn!(
                max_connections = max,
                "connection refused: every connection is busy"
            );
            let _ = tcp.try_write(OVER_CAPACITY);
            continue;
        };
        tokio::spawn(serve_connection(
            tcp,
            permit,
            app.clone(),
            conns.clone(),
            options.clone(),
            stopping.clone(),
        ));
    }
    drop(listener);
    signal.begin_shutdown();
    let _ = stop_conns.send(true);
    // Every connection holds a permit until it has finished: wait for all of them.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    Ok(())
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
    app: Router,
    conns: Arc<Conns>,
    options: Arc<ServeOptions>,
    mut stopping: watch::Receiver<bool>,
) {
    let (id, conn) = conns.register();
    let service = {
        let conn = conn.clone();
        let conns = conns.clone();
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            conn.in_flight.fetch_add(1, Ordering::AcqRel);
            let in_flight = InFlight {
                conn: conn.clone(),
                conns: conns.clone(),
            };
            let mut app = app.clone();
            async move {
                let response = tower::Service::call(&mut app, request.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|never| match never {});
                Ok::<_, std::convert::Infallible>(response.map(|inner| TrackedBody {
                    inner,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
    tokio::pin!(connection);
    let tick = options.idle_timeout.min(Duration::from_secs(1));
    let idle_ms = u64::try_from(options.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended");
                }
                break;
            }
            _ = conn.close.notified(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = stopping.changed(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep(tick), if !closing => {
                let idle = conn.in_flight.load(Ordering::Acquire) == 0
                    && conns.now_ms().saturating_sub(conn.last_busy_ms.load(Ordering::Acquire)) >= idle_ms;
                if idle {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
    conns.remove(id);
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
    spawn_with(addr, state, ServeOptions::default()).await
}

/// [`spawn`] with explicit [`ServeOptions`].
pub async fn spawn_with(
    addr: &str,
    state: AppState,
    options: ServeOptions,
) -> std::io::Result<Running> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    // The server runs in its own task so the caller can drive requests against it.
    let task = tokio::spawn(serve_with(listener, state, options, async move {
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
    let query = GetOrg(ById {
        id: DEV_MSP_ID.into(),
    });
    let query = serde_json::to_vec(&query).map_err(|e| LedgerError::Internal(e.to_string()))?;
    match ledger.evaluate(&admin.signing, GetOrg::NAME, &query).await {
        Ok(_) => return Ok(false),
        Err(LedgerError::Rejected { status: 404, .. }) => {}
        Err(e) => return Err(e),
    }
    let request = RegisterOrg {
        msp_id: DEV_MSP_ID.into(),
        name: "TOM development organisation".into(),
        ca_certificates: vec![ca_certificate.to_owned()],
        policy: Default::default(),
    };
    let argument =
        serde_json::to_vec(&request).map_err(|e| LedgerError::Internal(e.to_string()))?;
    ledger
        .submit(&admin.signing, RegisterOrg::NAME, &argument)
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_over_capacity_answer_is_well_formed() {
        let text = std::str::from_utf8(OVER_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["code"], "too_many_connections");
    }

    #[test]
    fn the_connection_cap_stays_below_the_open_file_limit() {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let options = ServeOptions {
            max_connections: usize::MAX,
            ..ServeOptions::default()
        };
        let max = options.effective_max_connections() as u64;
        assert!(
            max + FD_RESERVE <= limit.max(16 + FD_RESERVE),
            "{max} vs {limit}"
        );
    }
}
