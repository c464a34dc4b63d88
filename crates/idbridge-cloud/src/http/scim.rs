//! `/scim/v2`: RFC 7644 over HTTP. Every error is an RFC 7644 §3.12 error document.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use idbridge_scim::{
    if_none_match_satisfied, parse_attribute_list, resource_types_json, schemas_json,
    service_provider_config_json, BulkRequest, ListQuery, ResourceKind, ScimError,
};
use serde_json::Value;

use super::{authorize, json_response, parse_json, read_body, AppState, Denied};
use crate::directory::Scope;

const SCIM_JSON: &str = "application/scim+json";
const READERS: &[Scope] = &[Scope::Admin, Scope::Sync, Scope::Read];
const WRITERS: &[Scope] = &[Scope::Admin, Scope::Sync];

pub(super) fn routes() -> Router<AppState> {
    let resources = ResourceKind::ALL
        .into_iter()
        .fold(Router::new(), |router, kind| {
            router.merge(resource_routes(kind))
        });
    resources
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{name}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema))
        .route("/.search", post(search_root))
        .route("/Bulk", post(bulk))
        .fallback(|| async {
            ScimFailure(ScimError::not_found("no such SCIM endpoint")).into_response()
        })
}

struct ScimFailure(ScimError);

impl IntoResponse for ScimFailure {
    fn into_response(self) -> Response {
        json_response(self.0.status, SCIM_JSON, &self.0.to_json())
    }
}

impl From<ScimError> for ScimFailure {
    fn from(e: ScimError) -> Self {
        Self(e)
    }
}

impl From<Denied> for ScimFailure {
    fn from(d: Denied) -> Self {
        Self(match d {
            Denied::Unauthenticated => ScimError::unauthorized("a valid bearer token is required"),
            Denied::Forbidden(m) => ScimError::forbidden(m),
            Denied::Failed(e) => ScimError::new(e.status, None, e.message),
        })
    }
}

type ScimResult = Result<Response, ScimFailure>;

fn resource_response(status: StatusCode, resource: &Value) -> Response {
    let mut response = json_response(status.as_u16(), SCIM_JSON, resource);
    let meta = resource.get("meta");
    let headers = response.headers_mut();
    if let Some(v) = meta
        .and_then(|m| m.get("version"))
        .and_then(Value::as_str)
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED {
        if let Some(v) = meta
            .and_then(|m| m.get("location"))
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(header::LOCATION, v);
        }
    }
    response
}

async fn body_json(state: &AppState, body: Body) -> Result<Value, ScimError> {
    let limit = state.directory.config().limits.max_body_bytes;
    let bytes = read_body(body, limit).await.map_err(|limit| {
        ScimError::payload_too_large(format!("the body is larger than {limit} bytes"))
    })?;
    parse_json(&bytes).map_err(ScimError::invalid_syntax)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn list_query(
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<ListQuery, ScimError> {
    let Query(params) =
        params.map_err(|e| ScimError::invalid_syntax(format!("bad query string: {e}")))?;
    ListQuery::from_query_params(&params)
}

// ---- discovery ------------------------------------------------------------------------------

async fn service_provider_config(State(state): State<AppState>) -> Response {
    let limits = &state.directory.config().limits;
    json_response(
        200,
        SCIM_JSON,
        &service_provider_config_json(
            limits.max_bulk_operations,
            limits.max_body_bytes,
            limits.max_results,
        ),
    )
}

fn base_url(state: &AppState) -> String {
    format!("{}/scim/v2", state.directory.config().public_url())
}

async fn resource_types(State(state): State<AppState>) -> Response {
    let types = resource_types_json(&base_url(&state));
    json_response(
        200,
        SCIM_JSON,
        &idbridge_scim::list_response(types.len(), 1, types),
    )
}

async fn resource_type(State(state): State<AppState>, Path(name): Path<String>) -> ScimResult {
    resource_types_json(&base_url(&state))
        .into_iter()
        .find(|t| t.get("id").and_then(Value::as_str) == Some(name.as_str()))
        .map(|t| json_response(200, SCIM_JSON, &t))
        .ok_or_else(|| ScimError::not_found(format!("no resource type {name:?}")).into())
}

async fn schemas() -> Response {
    let all = schemas_json();
    json_response(
        200,
        SCIM_JSON,
        &idbridge_scim::list_response(all.len(), 1, all),
    )
}

async fn schema(Path(id): Path<String>) -> ScimResult {
    schemas_json()
        .into_iter()
        .find(|s| s.get("id").and_then(Value::as_str) == Some(id.as_str()))
        .map(|s| json_response(200, SCIM_JSON, &s))
        .ok_or_else(|| ScimError::not_found(format!("no schema {id:?}")).into())
}

// ---- resources ------------------------------------------------------------------------------

async fn list(
    state: &AppState,
    headers: &HeaderMap,
    kind: ResourceKind,
    query: Result<ListQuery, ScimError>,
) -> ScimResult {
    authorize(state, headers, READERS).await?;
    let list = state.directory.scim_list(kind, &query?).await?;
    Ok(json_response(200, SCIM_JSON, &list))
}

async fn search(
    state: &AppState,
    headers: &HeaderMap,
    kind: ResourceKind,
    body: Body,
) -> ScimResult {
    authorize(state, headers, READERS).await?;
    let body = body_json(state, body).await?;
    let query = ListQuery::from_search_request(&body)?;
    let list = state.directory.scim_list(kind, &query).await?;
    Ok(json_response(200, SCIM_JSON, &list))
}

async fn create(
    state: &AppState,
    headers: &HeaderMap,
    kind: ResourceKind,
    body: Body,
) -> ScimResult {
    let principal = authorize(state, headers, WRITERS).await?;
    let body = body_json(state, body).await?;
    let created = state.directory.scim_create(kind, &body, &principal).await?;
    Ok(resource_response(StatusCode::CREATED, &created))
}

async fn fetch(
    state: &AppState,
    headers: &HeaderMap,
    kind: ResourceKind,
    id: &str,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ScimResult {
    authorize(state, headers, READERS).await?;
    let Query(params) =
        params.map_err(|e| ScimError::invalid_syntax(format!("bad query string: {e}")))?;
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| parse_attribute_list(v))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let (attributes, excluded) = (param("attributes")?, param("excludedAttributes")?);
    let resource = state.directory.scim_get(kind, id).await?;
    let current = resource
        .get("meta")
        .and_then(|m| m.get("version"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(inm) = header_str(headers, header::IF_NONE_MATCH) {
        if !if_none_match_satisfied(inm, current) {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
    }
    let shown = idbridge_scim::project(kind, &resource, &attributes, &excluded);
    let mut response = resource_response(StatusCode::OK, &shown);
    if let Ok(v) = HeaderValue::from_str(current) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

#[derive(Clone, Copy)]
enum Write {
    Put,
    Patch,
}

async fn modify(
    state: &AppState,
    headers: &HeaderMap,
    kind: ResourceKind,
    id: &str,
    body: Body,
    write: Write,
) -> ScimResult {
    let principal = authorize(state, headers, WRITERS).await?;
    let body = body_json(state, body).await?;
    let if_match = header_str(headers, header::IF_MATCH);
    let d = &state.directory;
    let resource = match write {
        Write::Put => {
            d.scim_replace(kind, id, &body, if_match, &principal)
                .await?
        }
        Write::Patch => d.scim_patch(kind, id, &body, if_match, &principal).await?,
    };
    Ok(resource_response(StatusCode::OK, &resource))
}

async fn remove(state: &AppState, headers: &HeaderMap, kind: ResourceKind, id: &str) -> ScimResult {
    let principal = authorize(state, headers, WRITERS).await?;
    let if_match = header_str(headers, header::IF_MATCH);
    state
        .directory
        .scim_delete(kind, id, if_match, &principal)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The endpoints of one resource type (`/Users`, `/Groups`, `/Contacts`).
fn resource_routes(kind: ResourceKind) -> Router<AppState> {
    let collection = kind.endpoint();
    let write = move |how: Write| {
        move |State(s): State<AppState>, h: HeaderMap, Path(id): Path<String>, body: Body| async move {
            modify(&s, &h, kind, &id, body, how).await
        }
    };
    Router::new()
        .route(
            collection,
            get(
                move |State(s): State<AppState>,
                      h: HeaderMap,
                      params: Result<Query<Vec<(String, String)>>, QueryRejection>| async move {
                    list(&s, &h, kind, list_query(params)).await
                },
            )
            .post(
                move |State(s): State<AppState>, h: HeaderMap, body: Body| async move {
                    create(&s, &h, kind, body).await
                },
            ),
        )
        .route(
            &format!("{collection}/.search"),
            post(
                move |State(s): State<AppState>, h: HeaderMap, body: Body| async move {
                    search(&s, &h, kind, body).await
                },
            ),
        )
        .route(
            &format!("{collection}/{{id}}"),
            get(
                move |State(s): State<AppState>,
                      h: HeaderMap,
                      Path(id): Path<String>,
                      params: Result<Query<HashMap<String, String>>, QueryRejection>| async move {
                    fetch(&s, &h, kind, &id, params).await
                },
            )
            .put(write(Write::Put))
            .patch(write(Write::Patch))
            .delete(
                move |State(s): State<AppState>, h: HeaderMap, Path(id): Path<String>| async move {
                    remove(&s, &h, kind, &id).await
                },
            ),
        )
}

/// `POST /.search` at the root: every resource type together (RFC 7644 §3.4.3).
async fn search_root(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ScimResult {
    authorize(&state, &headers, READERS).await?;
    let body = body_json(&state, body).await?;
    let query = ListQuery::from_search_request(&body)?;
    let unpaged = ListQuery {
        start_index: 1,
        count: None,
        ..query.clone()
    };
    let mut all = Vec::new();
    for kind in ResourceKind::ALL {
        let list = state.directory.scim_list(kind, &unpaged).await?;
        if let Some(Value::Array(found)) = list.get("Resources").cloned() {
            all.extend(found);
        }
    }
    let total = all.len();
    let page: Vec<Value> = all.drain(query.page_range(total)).collect();
    Ok(json_response(
        200,
        SCIM_JSON,
        &idbridge_scim::list_response(total, query.start_index, page),
    ))
}

// ---- bulk -----------------------------------------------------------------------------------

async fn bulk(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ScimResult {
    let principal = authorize(&state, &headers, WRITERS).await?;
    let body = body_json(&state, body).await?;
    let request = BulkRequest::parse(body, state.directory.config().limits.max_bulk_operations)?;
    let reply = state.directory.scim_bulk(request, &principal).await?;
    Ok(json_response(200, SCIM_JSON, &reply))
}
