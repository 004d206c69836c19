//! The HTTP API (axum, JSON): rules registered, replaced, paused, resumed and deleted, their
//! versions and the audit trail; `/health` (no token) and `/ready`. Every other route needs
//! `Authorization: Bearer <token>` when the service has tokens.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Caller, Tokens};
use super::rules::{Refused, Rules};

#[derive(Clone)]
pub struct Api {
    pub rules: Arc<Rules>,
    pub tokens: Arc<Tokens>,
    /// Cancelled when the service stops: live streams end, so that the server can.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Requests refused for a missing or wrong token.
    pub unauthorized: Arc<std::sync::atomic::AtomicU64>,
}

pub fn router(api: Api) -> Router {
    let protected = Router::new()
        .route("/api/rules", post(create).get(list))
        .route(
            "/api/rules/{name}",
            get(get_rule).put(replace).delete(delete),
        )
        .route("/api/rules/{name}/pause", post(pause))
        .route("/api/rules/{name}/resume", post(resume))
        .route("/api/rules/{name}/versions", get(versions))
        .route("/api/audit", get(audit))
        .route("/api/alerts/stream", get(alerts_stream))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            authenticate,
        ));
    Router::new()
        .route("/", get(dashboard))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(protected)
        .with_state(api)
}

/// Lets a request through with its caller's name, or answers 401.
async fn authenticate(State(api): State<Api>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match api.tokens.caller(presented) {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => {
            api.unauthorized
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (
                StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({"error": "a valid bearer token is needed"})),
            )
                .into_response()
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Sql(errors) => (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "errors": errors
                        .iter()
                        .map(|e| json!({
                            "line": e.location.line,
                            "column": e.location.column,
                            "message": e.message,
                        }))
                        .collect::<Vec<_>>()
                })),
            )
                .into_response(),
            Refused::NameTaken(name) => error(
                StatusCode::CONFLICT,
                format!("a rule named '{name}' exists already: replace it with PUT"),
            ),
            Refused::NoSuchRule(name) => {
                error(StatusCode::NOT_FOUND, format!("no rule is named '{name}'"))
            }
            Refused::BadName(why) => error(StatusCode::BAD_REQUEST, why),
            Refused::Internal(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        }
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRule {
    name: String,
    sql: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewVersion {
    sql: String,
}

async fn create(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Json(rule): Json<NewRule>,
) -> Result<impl IntoResponse, Refused> {
    let created = api.rules.create(&rule.name, &rule.sql, &caller.0).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn list(State(api): State<Api>) -> impl IntoResponse {
    Json(api.rules.list().await)
}

async fn get_rule(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, Refused> {
    Ok(Json(api.rules.get(&name).await?))
}

async fn replace(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(version): Json<NewVersion>,
) -> Result<impl IntoResponse, Refused> {
    Ok(Json(
        api.rules.replace(&name, &version.sql, &caller.0).await?,
    ))
}

async fn pause(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, Refused> {
    Ok(Json(api.rules.pause(&name, &caller.0).await?))
}

async fn resume(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, Refused> {
    Ok(Json(api.rules.resume(&name, &caller.0).await?))
}

async fn delete(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, Refused> {
    api.rules.delete(&name, &caller.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn versions(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, Refused> {
    Ok(Json(api.rules.versions(&name).await?))
}

async fn audit(State(api): State<Api>) -> Result<impl IntoResponse, Refused> {
    Ok(Json(api.rules.audit_trail().await?))
}

#[derive(Deserialize)]
struct StreamFilter {
    rule: Option<String>,
}

/// Server-Sent Events: each alert as an `alert` event (`{"rule", "sink", "row"}`); a client that
/// falls behind gets a `skipped` event with how many it missed, and goes on.
async fn alerts_stream(
    State(api): State<Api>,
    Query(filter): Query<StreamFilter>,
) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>> {
    use tokio::sync::broadcast::error::RecvError;
    let receiver = api.rules.alerts.subscribe();
    let stream = futures::stream::unfold(receiver, move |mut receiver| {
        let wanted = filter.rule.clone();
        async move {
            loop {
                let event = match receiver.recv().await {
                    Ok(alert) if wanted.as_ref().is_none_or(|w| *w == alert.rule) => {
                        Event::default().event("alert").json_data(&alert).ok()?
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        Event::default().event("skipped").data(n.to_string())
                    }
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok(event), receiver));
            }
        }
    });
    use futures::StreamExt;
    let stream = stream.take_until(api.shutdown.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    let rules = api.rules.metrics().await;
    let unauthorized = api.unauthorized.load(std::sync::atomic::Ordering::Relaxed);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::metrics::render(&rules, unauthorized, eddy_engine::time::now_millis()),
    )
}

/// The dashboard: one page, built into the binary (no CDN), that asks for the token and uses the
/// API above.
async fn dashboard() -> impl IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        include_str!("dashboard.html"),
    )
}

async fn ready(State(api): State<Api>) -> impl IntoResponse {
    if api.rules.ready().await {
        (StatusCode::OK, Json(json!({"ready": true})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false})),
        )
    }
}
