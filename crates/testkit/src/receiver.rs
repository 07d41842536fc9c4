//! A real HTTP receiver on 127.0.0.1 that records every request and answers
//! as a test scripts it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status and an empty body.
    Status(u16),
    /// This status after a pause.
    Delayed(Duration, u16),
    /// This status with this text body.
    Body(u16, String),
    /// `302 Found` to this location.
    Redirect(String),
    /// This status with a `Retry-After` header.
    RetryAfter(u16, String),
    /// `200` with a body that never ends (a chunk every 50 ms).
    Endless,
    /// `200` with a body of this many bytes.
    Huge(usize),
    /// Never answers.
    Hang,
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: SystemTime,
    /// The request path.
    pub path: String,
    /// The headers as sent.
    pub headers: HeaderMap,
    /// The body bytes as sent.
    pub body: Bytes,
}

impl Received {
    /// Headers as (name, value) pairs, for verifiers.
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect()
    }
}

/// Accepts TCP connections and completes their TLS handshakes; refused
/// handshakes are counted and dropped. For `axum::serve`.
pub struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    refused: Arc<std::sync::atomic::AtomicUsize>,
}

impl TlsListener {
    /// Serves TLS with `config` on `tcp`.
    pub fn new(tcp: tokio::net::TcpListener, config: rustls::ServerConfig) -> Self {
        Self {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            refused: Arc::default(),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            match tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => return (tls, addr),
                _ => {
                    self.refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Decides the status for a request from its headers and body (for
/// receivers that verify signatures).
pub type Judge = Arc<dyn Fn(&HeaderMap, &[u8]) -> u16 + Send + Sync>;

struct Shared {
    records: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    judge: Mutex<Option<Judge>>,
    arrived: Notify,
}

/// A running receiver. It stops when dropped.
pub struct Receiver {
    /// The address it listens on.
    pub addr: SocketAddr,
    scheme: &'static str,
    /// TLS handshakes it refused (no client certificate, a wrong one).
    refused: Arc<std::sync::atomic::AtomicUsize>,
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 at a free port, answering `200`.
    pub async fn start() -> Result<Self> {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts a receiver at `addr` (such as `127.0.0.2:0`).
    pub async fn start_on(addr: &str) -> Result<Self> {
        let shared = Self::shared();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = crate::serve_until_dropped(listener, app);
        Ok(Self {
            addr,
            scheme: "http",
            refused: Arc::default(),
            shared,
            _stop: stop,
        })
    }

    /// Starts an HTTPS receiver on 127.0.0.1 with `server`'s certificate;
    /// with `client_ca` (PEM), it requires a client certificate that CA
    /// issued and refuses the handshake otherwise.
    pub async fn start_tls(server: &crate::tls::Issued, client_ca: Option<&str>) -> Result<Self> {
        let config = crate::tls::server_config(server, client_ca)?;
        let shared = Self::shared();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = tcp.local_addr()?;
        let listener = TlsListener::new(tcp, config);
        let refused = listener.refused.clone();
        let stop = crate::serve_until_dropped(listener, app);
        Ok(Self {
            addr,
            scheme: "https",
            refused,
            shared,
            _stop: stop,
        })
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            records: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::Status(200)),
            judge: Mutex::new(None),
            arrived: Notify::new(),
        })
    }

    /// `http://127.0.0.1:{port}{path}` (`https` for a TLS receiver).
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// How many TLS handshakes it refused.
    pub fn tls_refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The answer once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        if let Ok(mut d) = self.shared.default.lock() {
            *d = reply;
        }
    }

    /// Answers the next requests with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        if let Ok(mut s) = self.shared.script.lock() {
            s.extend(replies);
        }
    }

    /// Lets `judge` pick the status of every request whose reply is `200`.
    pub fn judge_with(&self, judge: Judge) {
        if let Ok(mut j) = self.shared.judge.lock() {
            *j = Some(judge);
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<Received>> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            let got = self.received();
            if got.len() >= n {
                return Ok(got);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("receiver got {} of {n} requests in {timeout:?}", got.len());
            }
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let record = Received {
        at: SystemTime::now(),
        path: parts.uri.path().to_owned(),
        headers: parts.headers,
        body,
    };
    let reply = shared
        .script
        .lock()
        .ok()
        .and_then(|mut s| s.pop_front())
        .or_else(|| shared.default.lock().ok().map(|d| d.clone()))
        .unwrap_or(Reply::Status(200));
    let judged = match (&reply, shared.judge.lock().ok().and_then(|j| j.clone())) {
        (Reply::Status(200), Some(judge)) => Some(judge(&record.headers, &record.body)),
        _ => None,
    };
    if let Ok(mut records) = shared.records.lock() {
        records.push(record);
    }
    shared.arrived.notify_waiters();
    let status = |code: u16| StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(code) = judged {
        return status(code).into_response();
    }
    match reply {
        Reply::Status(code) => status(code).into_response(),
        Reply::Body(code, text) => (status(code), text).into_response(),
        Reply::Delayed(pause, code) => {
            tokio::time::sleep(pause).await;
            status(code).into_response()
        }
        Reply::Redirect(location) => (StatusCode::FOUND, [("location", location)]).into_response(),
        Reply::RetryAfter(code, after) => (status(code), [("retry-after", after)]).into_response(),
        Reply::Endless => {
            let chunks = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Ok::<_, Infallible>(Bytes::from_static(b"still going...")), ()))
            });
            Response::new(Body::from_stream(chunks))
        }
        Reply::Huge(size) => Response::new(Body::from(vec![b'x'; size])),
        Reply::Hang => {
            std::future::pending::<()>().await;
            StatusCode::OK.into_response()
        }
    }
}
