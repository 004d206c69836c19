//! The HTTP API (axum, JSON): rules registered, replaced, paused, resumed and deleted, their
//! versions and the audit trail; `/health` (no token) and `/ready`. Every other route needs
//! `Authorization: Bearer <token>` when the service has tokens.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, Tokens};
use super::catalog::{AuditEntry, Version};
use super::rules::{Alert, Refused, RuleView, Rules};

#[derive(Clone)]
pub struct Api {
    pub rules: Arc<Rules>,
    pub tokens: Arc<Tokens>,
    /// Cancelled when the service stops: live streams end, so that the server can.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Requests refused for a missing or wrong token.
    pub unauthorized: Arc<std::sync::atomic::AtomicU64>,
}

/// The API's description: its routes, collected from the handlers below as they are registered,
/// so that it cannot leave one out.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Eddy",
        description = "Rules (windowed SQL over IoT streams) registered, replaced, paused and watched at runtime."
    ),
    modifiers(&BearerTokens),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Every route but `/health`, `/` and this description needs a bearer token.
struct BearerTokens;

impl utoipa::Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router(api: Api) -> Router {
    let (protected, spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create, list))
        .routes(routes!(get_rule, replace, delete))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(versions))
        .routes(routes!(audit))
        .routes(routes!(alerts_stream))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .split_for_parts();
    let protected = protected.layer(axum::middleware::from_fn_with_state(
        api.clone(),
        authenticate,
    ));
    let spec = Arc::new(spec);
    Router::new()
        .route("/", get(dashboard))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route(
            "/api/openapi.json",
            get(move || {
                let spec = Arc::clone(&spec);
                async move { Json(spec) }
            }),
        )
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
                Json(SqlErrors {
                    errors: errors
                        .into_iter()
                        .map(|e| SqlProblem {
                            line: e.location.line,
                            column: e.location.column,
                            message: e.message,
                        })
                        .collect(),
                }),
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
    (status, Json(Problem { error: message })).into_response()
}

/// A rule to register.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewRule {
    /// 1 to 64 letters, digits, `-` or `_`.
    name: String,
    /// `INSERT INTO` statements over the catalog, or a whole file with its own sources and sinks.
    sql: String,
}

/// A rule's new version.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewVersion {
    sql: String,
}

/// The problems of SQL that does not plan, each at its line and column of the rule's SQL.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct SqlErrors {
    errors: Vec<SqlProblem>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct SqlProblem {
    line: u64,
    column: u64,
    message: String,
}

/// Why a request was refused.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Problem {
    error: String,
}

#[utoipa::path(post, path = "/api/rules", request_body = NewRule,
    responses((status = 201, description = "registered and running", body = RuleView),
              (status = 400, description = "the SQL does not plan, or the name is not one", body = SqlErrors),
              (status = 409, description = "a rule has that name", body = Problem)))]
async fn create(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Json(rule): Json<NewRule>,
) -> Result<impl IntoResponse, Refused> {
    let created = api.rules.create(&rule.name, &rule.sql, &caller.0).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/rules",
    responses((status = 200, description = "every rule with its state and counters", body = [RuleView])))]
async fn list(State(api): State<Api>) -> impl IntoResponse {
    Json(api.rules.list().await)
}

#[utoipa::path(get, path = "/api/rules/{name}", params(("name" = String, Path)),
    responses((status = 200, description = "the rule with its SQL and plan", body = RuleView),
              (status = 404, body = Problem)))]
async fn get_rule(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, Refused> {
    Ok(Json(api.rules.get(&name).await?))
}

#[utoipa::path(put, path = "/api/rules/{name}", params(("name" = String, Path)), request_body = NewVersion,
    responses((status = 200, description = "the new version runs (state_kept says whether from the old one's state)", body = RuleView),
              (status = 400, description = "the new SQL does not plan: the old version runs on", body = SqlErrors),
              (status = 404, body = Problem)))]
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

#[utoipa::path(post, path = "/api/rules/{name}/pause", params(("name" = String, Path)),
    responses((status = 200, description = "stopped after a last checkpoint", body = RuleView),
              (status = 404, body = Problem)))]
async fn pause(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, Refused> {
    Ok(Json(api.rules.pause(&name, &caller.0).await?))
}

#[utoipa::path(post, path = "/api/rules/{name}/resume", params(("name" = String, Path)),
    responses((status = 200, description = "running again from its last checkpoint", body = RuleView),
              (status = 404, body = Problem)))]
async fn resume(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, Refused> {
    Ok(Json(api.rules.resume(&name, &caller.0).await?))
}

#[utoipa::path(delete, path = "/api/rules/{name}", params(("name" = String, Path)),
    responses((status = 204, description = "the rule and its state are gone"),
              (status = 404, body = Problem)))]
async fn delete(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, Refused> {
    api.rules.delete(&name, &caller.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/rules/{name}/versions", params(("name" = String, Path)),
    responses((status = 200, description = "every version, oldest first", body = [Version]),
              (status = 404, body = Problem)))]
async fn versions(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, Refused> {
    Ok(Json(api.rules.versions(&name).await?))
}

#[utoipa::path(get, path = "/api/audit",
    responses((status = 200, description = "every change, oldest first", body = [AuditEntry])))]
async fn audit(State(api): State<Api>) -> Result<impl IntoResponse, Refused> {
    Ok(Json(api.rules.audit_trail().await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamFilter {
    /// Only this rule's alerts.
    rule: Option<String>,
}

#[utoipa::path(get, path = "/api/alerts/stream", params(StreamFilter),
    responses((status = 200, description = "Server-Sent Events: `alert` events (an Alert as JSON), `skipped` events (how many a slow client missed)", content_type = "text/event-stream", body = Alert)))]
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

#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text format, every series labelled with its rule", content_type = "text/plain", body = String)))]
async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    let rules = api.rules.metrics().await;
    let unauthorized = api.unauthorized.load(std::sync::atomic::Ordering::Relaxed);
    let connections = api.rules.shared_connections().await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::metrics::render(
            &rules,
            unauthorized,
            connections,
            eddy_engine::time::now_millis(),
        ),
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

#[utoipa::path(get, path = "/ready",
    responses((status = 200, description = "every rule not paused is running"),
              (status = 503, description = "a rule has failed or stopped")))]
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
