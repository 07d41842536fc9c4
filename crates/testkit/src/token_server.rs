//! An OAuth2 authorization server's token endpoint on 127.0.0.1 (client
//! credentials, the client authenticated with HTTP Basic) that counts the
//! tokens it issues and can revoke them; and a judge for a receiver that
//! accepts only its live tokens.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::receiver::Judge;

struct Shared {
    client_id: String,
    client_secret: String,
    expires_in: AtomicU64,
    requests: AtomicUsize,
    live: Mutex<HashSet<String>>,
    forms: Mutex<Vec<String>>,
}

/// A running token endpoint. It stops when dropped.
pub struct TokenServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn token(State(s): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let n = s.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if let Ok(mut forms) = s.forms.lock() {
        forms.push(body.clone());
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", s.client_id, s.client_secret))
    );
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if given != expected {
        return (
            StatusCode::UNAUTHORIZED,
            [("content-type", "application/json")],
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
        )
            .into_response();
    }
    if !body.split('&').any(|p| p == "grant_type=client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            r#"{"error":"unsupported_grant_type"}"#,
        )
            .into_response();
    }
    let issued = format!("tok-{n}-{:016x}", fastrand::u64(..));
    if let Ok(mut live) = s.live.lock() {
        live.insert(issued.clone());
    }
    let answer = serde_json::json!({
        "access_token": issued,
        "token_type": "Bearer",
        "expires_in": s.expires_in.load(Ordering::SeqCst),
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        answer.to_string(),
    )
        .into_response()
}

impl TokenServer {
    /// Starts a token endpoint for one client, issuing tokens that live
    /// `expires_in` seconds.
    pub async fn start(client_id: &str, client_secret: &str, expires_in: u64) -> Result<Self> {
        let shared = Arc::new(Shared {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            expires_in: AtomicU64::new(expires_in),
            requests: AtomicUsize::new(0),
            live: Mutex::new(HashSet::new()),
            forms: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/token", axum::routing::post(token))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = crate::serve_until_dropped(listener, app);
        Ok(Self {
            addr,
            shared,
            _stop: stop,
        })
    }

    /// `http://127.0.0.1:{port}/token`.
    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// Token requests received, answered or not.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The form bodies of the token requests.
    pub fn forms(&self) -> Vec<String> {
        self.shared.forms.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Revokes every token issued so far (they no longer pass the judge).
    pub fn revoke_all(&self) {
        if let Ok(mut live) = self.shared.live.lock() {
            live.clear();
        }
    }

    /// A judge for a receiver: `200` for a request bearing a live token,
    /// `401` otherwise.
    pub fn judge(&self) -> Judge {
        let shared = self.shared.clone();
        Arc::new(move |headers: &HeaderMap, _body: &[u8]| {
            let token = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            let live = token.is_some_and(|t| shared.live.lock().map(|l| l.contains(t)).unwrap_or(false));
            if live { 200 } else { 401 }
        })
    }
}
