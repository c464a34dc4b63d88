//! The SCIM 2.0 protocol core (RFC 7643 schemas, RFC 7644 protocol) of the idbridge cloud directory.
//!
//! Invariant: this crate is **pure** — no I/O, no clocks, no HTTP, no storage. Every function maps
//! JSON (`serde_json::Value`) and parsed requests to JSON or to a [`ScimError`] that already carries
//! the HTTP status and `scimType` RFC 7644 §3.12 prescribes, so the server only moves bytes.
//!
//! Untrusted input never panics and never makes work grow without bound: filters and paths are
//! length- and depth-capped, and JSON walks are iterative.

mod bulk;
mod error;
mod etag;
mod filter;
mod list;
mod patch;
mod path;
mod projection;
mod schema;
mod validate;
mod value;

pub use bulk::{
    bulk_operation_result, bulk_response, parse_bulk_path, referenced_bulk_ids, resolve_bulk_ids,
    BulkMethod, BulkOperation, BulkRequest,
};
pub use error::{ScimError, ScimType};
pub use etag::{etag, if_match_satisfied, if_none_match_satisfied};
pub use filter::{CompValue, CompareOp, EqKey, Filter, MAX_FILTER_DEPTH, MAX_FILTER_LEN};
pub use list::{list_response, sort_resources, ListQuery, SortOrder};
pub use patch::{apply_patch, touched_attributes, PatchOpKind, PatchOperation, PatchRequest};
pub use path::{parse_attribute_list, AttrPath, PatchPath};
pub use projection::project;
pub use schema::{
    resource_types_json, schemas_json, service_provider_config_json, AttrType, AttributeDef,
    Mutability, ResourceKind, Returned, Schema, Uniqueness, BULK_REQUEST, BULK_RESPONSE,
    CONTACT_SCHEMA, ENTERPRISE_USER_SCHEMA, ERROR, GROUP_SCHEMA, LIST_RESPONSE, PATCH_OP,
    SEARCH_REQUEST, SYNC_CONTACT_SCHEMA, SYNC_GROUP_SCHEMA, SYNC_USER_SCHEMA, USER_SCHEMA,
};
pub use validate::{take_password, validate_resource};
