//! Who is asking, decided once per request before the handler runs.

use axum::extract::FromRequestParts;
use http::header::AUTHORIZATION;
use http::request::Parts;

use crate::admin::Scope;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// The caller's scope, from `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct Caller(pub Scope);

/// The bearer token of a request, if it carries one.
pub fn bearer(parts: &http::HeaderMap) -> Option<&str> {
    let value = parts.get(AUTHORIZATION)?.to_str().ok()?;
    let (kind, token) = value.split_once(' ')?;
    kind.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks a request's token: its scope, or a 401 problem.
pub async fn scope_of(state: &AppState, headers: &http::HeaderMap) -> Result<Scope, Problem> {
    let Some(token) = bearer(headers) else {
        return Err(Problem::new(
            ProblemKind::Unauthorized,
            "send Authorization: Bearer <token> (outhook token new)",
        ));
    };
    match state.authenticate(token).await {
        Ok(Some(scope)) => Ok(scope),
        Ok(None) => Err(Problem::new(
            ProblemKind::Unauthorized,
            "the token is unknown, revoked or expired",
        )),
        Err(e) => Err(e.into()),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let scope = scope_of(state, &parts.headers).await?;
        parts.extensions.insert(Caller(scope.clone()));
        Ok(Caller(scope))
    }
}
