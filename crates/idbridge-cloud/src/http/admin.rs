//! `/api/v1`: the admin API, sign-in, and the sync agent's password hash route. Errors are
//! `{"error": <code>, "message": <text>}`.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use idbridge_core::Secret;
use idbridge_scim::ResourceKind;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{authorize, json_response, parse_json, read_body, AppState, Denied};
use crate::directory::{Principal, Scope, SigninOutcome};
use crate::error::ApiError;

const JSON: &str = "application/json";
const ADMIN: &[Scope] = &[Scope::Admin];
const SYNC: &[Scope] = &[Scope::Sync];
const SIGNED_IN: &[Scope] = &[];

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/signin", post(signin))
        .route("/me/password", post(change_own_password))
        .route("/me/sspr", post(register_sspr))
        .route("/me/totp", post(enroll_totp))
        .route("/sspr/start", post(sspr_start))
        .route("/sspr/complete", post(sspr_complete))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{id}", get(get_user))
        .route("/users/{id}/licenses", post(assign_license))
        .route("/users/{id}/licenses/{sku}", delete(remove_license))
        .route("/users/{id}/password-reset", post(reset_password))
        .route("/users/{id}/unlock", post(unlock_user))
        .route("/sync/users/{id}/password-hash", put(set_password_hash))
        .merge(soft_delete_routes(ResourceKind::User, "users"))
        .merge(soft_delete_routes(ResourceKind::Group, "groups"))
        .merge(soft_delete_routes(ResourceKind::Contact, "contacts"))
        .route("/tenant/settings", get(get_settings).put(put_settings))
        .route("/audit", get(audit))
        .fallback(|| async { Failure(ApiError::not_found("no such API route")).into_response() })
}

pub(super) struct Failure(pub(super) ApiError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        json_response(self.0.status, JSON, &self.0.to_json())
    }
}

impl<E: Into<ApiError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Unauthenticated => ApiError::unauthorized(),
            Denied::Forbidden(m) => ApiError::forbidden(m),
            Denied::Failed(e) => e,
        }
    }
}

pub(super) type ApiResult = Result<Response, Failure>;

pub(super) fn ok(status: StatusCode, body: &impl serde::Serialize) -> ApiResult {
    let value =
        serde_json::to_value(body).map_err(|e| ApiError::new(500, "internal", e.to_string()))?;
    Ok(json_response(status.as_u16(), JSON, &value))
}

async fn body_json(state: &AppState, body: Body) -> Result<Value, ApiError> {
    let limit = state.directory.config().limits.max_body_bytes;
    let bytes = read_body(body, limit).await.map_err(|limit| {
        ApiError::new(
            413,
            "payload_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    })?;
    parse_json(&bytes).map_err(ApiError::bad_request)
}

/// A typed body; the message names the field serde disliked.
pub(super) async fn body_as<T: serde::de::DeserializeOwned>(
    state: &AppState,
    body: Body,
) -> Result<T, ApiError> {
    serde_json::from_value(body_json(state, body).await?)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

pub(super) async fn admin(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    Ok(authorize(state, headers, ADMIN).await?)
}

// ---- sign-in --------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SigninRequest {
    username: String,
    password: Secret,
}

async fn signin(State(state): State<AppState>, body: Body) -> ApiResult {
    let request: SigninRequest = body_as(&state, body).await?;
    match state
        .directory
        .sign_in(&request.username, &request.password)
        .await?
    {
        SigninOutcome::Session { token, expires_at } => ok(
            StatusCode::OK,
            &json!({"token": token.expose(), "expires_at": expires_at}),
        ),
        SigninOutcome::ChangeRequired { change_token } => ok(
            StatusCode::FORBIDDEN,
            &json!({
                "error": "password_change_required",
                "message": "the password must be changed: POST /api/v1/me/password with change_token as the bearer token",
                "change_token": change_token.expose(),
            }),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePassword {
    old_password: Secret,
    new_password: Secret,
}

async fn change_own_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let principal = authorize(&state, &headers, SIGNED_IN).await?;
    let request: ChangePassword = body_as(&state, body).await?;
    let written_back = state
        .directory
        .change_own_password(&principal, &request.old_password, &request.new_password)
        .await?;
    ok(
        StatusCode::OK,
        &json!({"changed": true, "written_back": written_back}),
    )
}

// ---- self-service password reset ------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SsprRegistration {
    alternate_email: String,
}

async fn register_sspr(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult {
    let principal = authorize(&state, &headers, SIGNED_IN).await?;
    let request: SsprRegistration = body_as(&state, body).await?;
    state
        .directory
        .register_alternate_email(&principal, &request.alternate_email)
        .await?;
    ok(StatusCode::OK, &json!({"registered": true}))
}

async fn enroll_totp(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let principal = authorize(&state, &headers, SIGNED_IN).await?;
    let (secret, uri) = state.directory.enroll_totp(&principal).await?;
    ok(
        StatusCode::OK,
        &json!({"secret": secret.expose(), "otpauth_uri": uri}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SsprStart {
    username: String,
}

async fn sspr_start(State(state): State<AppState>, body: Body) -> ApiResult {
    let request: SsprStart = body_as(&state, body).await?;
    state.directory.sspr_start(&request.username).await?;
    ok(
        StatusCode::ACCEPTED,
        &json!({"message": "if the account exists and has a registered method, a code is on its way"}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SsprComplete {
    username: String,
    code: Secret,
    new_password: Secret,
    #[serde(default)]
    unlock: bool,
}

async fn sspr_complete(State(state): State<AppState>, body: Body) -> ApiResult {
    let request: SsprComplete = body_as(&state, body).await?;
    state
        .directory
        .sspr_complete(
            &request.username,
            request.code.expose(),
            &request.new_password,
            request.unlock,
        )
        .await?;
    ok(StatusCode::OK, &json!({"reset": true}))
}

// ---- users ----------------------------------------------------------------------------------

async fn list_users(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    admin(&state, &headers).await?;
    ok(
        StatusCode::OK,
        &json!({"users": state.directory.list_users().await?}),
    )
}

async fn create_user(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult {
    let principal = admin(&state, &headers).await?;
    let body = body_json(&state, body).await?;
    let view = state.directory.create_cloud_user(&principal, &body).await?;
    ok(StatusCode::CREATED, &view)
}

async fn get_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    admin(&state, &headers).await?;
    let user = state.directory.live_user(&id).await?;
    ok(StatusCode::OK, &state.directory.user_view(&user).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LicenseRequest {
    sku: String,
}

async fn assign_license(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult {
    let principal = admin(&state, &headers).await?;
    let request: LicenseRequest = body_as(&state, body).await?;
    let view = state
        .directory
        .assign_license(&principal, &id, &request.sku)
        .await?;
    ok(StatusCode::OK, &view)
}

async fn remove_license(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, sku)): Path<(String, String)>,
) -> ApiResult {
    let principal = admin(&state, &headers).await?;
    let view = state
        .directory
        .remove_license(&principal, &id, &sku)
        .await?;
    ok(StatusCode::OK, &view)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    #[serde(default)]
    new_password: Option<Secret>,
    #[serde(default)]
    require_change: bool,
    /// Makes retries idempotent (also accepted as the `Idempotency-Key` header).
    #[serde(default)]
    request_id: Option<String>,
}

/// The caller's request id: the body's, else the `Idempotency-Key` header.
fn request_id(headers: &HeaderMap, from_body: Option<String>) -> Option<String> {
    from_body.or_else(|| {
        headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
}

async fn reset_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult {
    let principal = admin(&state, &headers).await?;
    let request: ResetRequest = body_as(&state, body).await?;
    let (temporary, written_back) = state
        .directory
        .reset_password(
            &principal,
            &id,
            request.new_password,
            request.require_change,
            request_id(&headers, request.request_id),
        )
        .await?;
    ok(
        StatusCode::OK,
        &ResetReply {
            temporary_password: temporary.as_ref().map(Secret::expose),
            written_back,
        },
    )
}

async fn unlock_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let principal = admin(&state, &headers).await?;
    let written_back = state.directory.unlock_user(&principal, &id).await?;
    ok(
        StatusCode::OK,
        &json!({"unlocked": true, "written_back": written_back}),
    )
}

#[derive(serde::Serialize)]
struct ResetReply<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temporary_password: Option<&'a str>,
    written_back: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifierRequest {
    verifier: Secret,
}

async fn set_password_hash(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult {
    let principal = authorize(&state, &headers, SYNC).await?;
    let request: VerifierRequest = body_as(&state, body).await?;
    state
        .directory
        .set_password_verifier(&principal, &id, request.verifier.expose())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- soft delete lifecycle ------------------------------------------------------------------

/// `DELETE /{plural}/{id}`, `GET /deleted-{plural}`, `POST /deleted-{plural}/{id}/restore`,
/// `DELETE /deleted-{plural}/{id}`: the same lifecycle for users, groups and contacts.
fn soft_delete_routes(kind: ResourceKind, plural: &'static str) -> Router<AppState> {
    Router::new()
        .route(
            &format!("/{plural}/{{id}}"),
            delete(
                move |State(s): State<AppState>, h: HeaderMap, Path(id): Path<String>| async move {
                    soft_delete(&s, &h, kind, &id).await
                },
            ),
        )
        .route(
            &format!("/deleted-{plural}"),
            get(move |State(s): State<AppState>, h: HeaderMap| async move {
                list_deleted(&s, &h, kind, plural).await
            }),
        )
        .route(
            &format!("/deleted-{plural}/{{id}}/restore"),
            post(
                move |State(s): State<AppState>, h: HeaderMap, Path(id): Path<String>| async move {
                    restore(&s, &h, kind, &id).await
                },
            ),
        )
        .route(
            &format!("/deleted-{plural}/{{id}}"),
            delete(
                move |State(s): State<AppState>, h: HeaderMap, Path(id): Path<String>| async move {
                    purge(&s, &h, kind, &id).await
                },
            ),
        )
}

async fn soft_delete(
    state: &AppState,
    headers: &HeaderMap,
    kind: ResourceKind,
    id: &str,
) -> ApiResult {
    let principal = admin(state, headers).await?;
    state.directory.soft_delete(&principal, kind, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The deleted objects of `kind`, listed under the key `plural` (`{"users": [...]}`).
async fn list_deleted(
    state: &AppState,
    headers: &HeaderMap,
    kind: ResourceKind,
    plural: &str,
) -> ApiResult {
    admin(state, headers).await?;
    ok(
        StatusCode::OK,
        &json!({ plural: state.directory.deleted(kind).await? }),
    )
}

async fn restore(state: &AppState, headers: &HeaderMap, kind: ResourceKind, id: &str) -> ApiResult {
    let principal = admin(state, headers).await?;
    let restored = state.directory.restore(&principal, kind, id).await?;
    match kind {
        ResourceKind::User => ok(StatusCode::OK, &state.directory.user_view(&restored).await?),
        ResourceKind::Group | ResourceKind::Contact => {
            ok(StatusCode::OK, &state.directory.render(&restored))
        }
    }
}

async fn purge(state: &AppState, headers: &HeaderMap, kind: ResourceKind, id: &str) -> ApiResult {
    let principal = admin(state, headers).await?;
    state.directory.purge(&principal, kind, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- tenant ---------------------------------------------------------------------------------

async fn get_settings(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    admin(&state, &headers).await?;
    ok(StatusCode::OK, &state.directory.settings().await?)
}

async fn put_settings(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult {
    let principal = admin(&state, &headers).await?;
    let body = body_json(&state, body).await?;
    ok(
        StatusCode::OK,
        &state.directory.set_settings(&principal, body).await?,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    action: Option<String>,
}

async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    admin(&state, &headers).await?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let events = state
        .directory
        .store()
        .audit(limit, q.before, q.action.as_deref())
        .await?;
    ok(StatusCode::OK, &json!({ "events": events }))
}
