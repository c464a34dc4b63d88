//! Bulk requests (RFC 7644 §3.7): parsing, bulkId cross-references, and the response.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use crate::error::ScimError;
use crate::schema::{ResourceKind, BULK_REQUEST, BULK_RESPONSE};
use crate::value::{get_ci, take_ci};

/// The prefix by which data refers to a resource created earlier in the same request.
const BULK_ID_PREFIX: &str = "bulkId:";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BulkMethod {
    Post,
    Put,
    Patch,
    Delete,
}

impl BulkMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Post, Self::Put, Self::Patch, Self::Delete]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BulkRequest {
    /// Stop after this many errors (`None`: process every operation).
    pub fail_on_errors: Option<usize>,
    pub operations: Vec<BulkOperation>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BulkOperation {
    pub method: BulkMethod,
    pub bulk_id: Option<String>,
    /// As sent; [`parse_bulk_path`] interprets it per operation so that a bad path fails
    /// only its own operation.
    pub path: String,
    pub version: Option<String>,
    pub data: Option<Value>,
}

impl BulkRequest {
    /// Parses a bulk request. More than `max_operations` operations is 413 (RFC 7644 §3.7.4);
    /// a malformed request (missing method/path, POST without bulkId, POST/PUT/PATCH without
    /// data, duplicate bulkIds) is 400 `invalidSyntax`/`invalidValue`. The operations' data
    /// are moved out of `body`, not copied (a request carries hundreds of resources).
    pub fn parse(mut body: Value, max_operations: usize) -> Result<Self, ScimError> {
        let obj = body
            .as_object_mut()
            .ok_or_else(|| ScimError::invalid_syntax("the bulk request must be a JSON object"))?;
        let declared = get_ci(obj, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .any(|u| u.eq_ignore_ascii_case(BULK_REQUEST))
            });
        if !declared {
            return Err(ScimError::invalid_syntax(format!(
                "\"schemas\" must include {BULK_REQUEST:?}"
            )));
        }
        let fail_on_errors = match get_ci(obj, "failOnErrors") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| *n > 0)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        ScimError::invalid_value("failOnErrors must be a positive integer")
                    })?,
            ),
        };
        let Some(Value::Array(ops)) = take_ci(obj, "Operations") else {
            return Err(ScimError::invalid_syntax("\"Operations\" must be an array"));
        };
        if ops.len() > max_operations {
            return Err(ScimError::payload_too_large(format!(
                "the bulk request has {} operations; the maximum is {max_operations}",
                ops.len()
            )));
        }
        let mut operations: Vec<BulkOperation> = Vec::with_capacity(ops.len());
        let mut bulk_ids = HashSet::with_capacity(ops.len());
        for (i, op) in ops.into_iter().enumerate() {
            let op = parse_operation(i, op)?;
            if let Some(id) = &op.bulk_id {
                if !bulk_ids.insert(id.clone()) {
                    return Err(ScimError::invalid_value(format!(
                        "operation {i}: bulkId {id:?} is used more than once"
                    )));
                }
            }
            operations.push(op);
        }
        Ok(Self {
            fail_on_errors,
            operations,
        })
    }
}

fn parse_operation(i: usize, mut op: Value) -> Result<BulkOperation, ScimError> {
    let obj = op
        .as_object_mut()
        .ok_or_else(|| ScimError::invalid_syntax(format!("operation {i} must be a JSON object")))?;
    let data = take_ci(obj, "data").filter(|d| !d.is_null());
    let obj = &*obj;
    let string = |key: &str| -> Result<Option<String>, ScimError> {
        match get_ci(obj, key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ScimError::invalid_syntax(format!(
                "operation {i}: {key:?} must be a string"
            ))),
        }
    };
    let method = string("method")?
        .and_then(|m| BulkMethod::parse(&m))
        .ok_or_else(|| {
            ScimError::invalid_syntax(format!(
                "operation {i}: \"method\" must be POST, PUT, PATCH or DELETE"
            ))
        })?;
    let path = string("path")?
        .ok_or_else(|| ScimError::invalid_syntax(format!("operation {i}: \"path\" is required")))?;
    let bulk_id = string("bulkId")?;
    if method == BulkMethod::Post && bulk_id.as_deref().is_none_or(str::is_empty) {
        return Err(ScimError::invalid_value(format!(
            "operation {i}: POST requires a \"bulkId\""
        )));
    }
    if method != BulkMethod::Delete && data.is_none() {
        return Err(ScimError::invalid_value(format!(
            "operation {i}: {} requires \"data\"",
            method.as_str()
        )));
    }
    Ok(BulkOperation {
        method,
        bulk_id,
        path,
        version: string("version")?,
        data,
    })
}

/// Interprets a bulk operation path: `/Users` or `/Groups`, optionally followed by `/<id>`
/// (which may itself be `bulkId:<name>`, to be resolved by the caller). 400 `invalidPath` else.
pub fn parse_bulk_path(path: &str) -> Result<(ResourceKind, Option<String>), ScimError> {
    let invalid = || ScimError::invalid_path(format!("bulk path {path:?} names no resource type"));
    let rest = path.strip_prefix('/').ok_or_else(invalid)?;
    let (endpoint, id) = match rest.split_once('/') {
        Some((endpoint, id)) => (endpoint, Some(id)),
        None => (rest, None),
    };
    let kind = ResourceKind::ALL
        .into_iter()
        .find(|k| {
            k.endpoint()
                .trim_start_matches('/')
                .eq_ignore_ascii_case(endpoint)
        })
        .ok_or_else(invalid)?;
    match id {
        None => Ok((kind, None)),
        Some(id) if !id.is_empty() && !id.contains('/') => Ok((kind, Some(id.to_owned()))),
        Some(_) => Err(ScimError::invalid_path(format!(
            "bulk path {path:?} must be /{}/<id>",
            kind.name()
        ))),
    }
}

/// Every `bulkId:<name>` string in `data`, in document order (duplicates kept out): the
/// operations `data` depends on, for ordering a bulk request.
pub fn referenced_bulk_ids(data: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut stack = vec![data];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => {
                if let Some(id) = s.strip_prefix(BULK_ID_PREFIX) {
                    if !out.iter().any(|o| o == id) {
                        out.push(id.to_owned());
                    }
                }
            }
            Value::Array(a) => stack.extend(a.iter().rev()),
            Value::Object(o) => stack.extend(o.values().rev()),
            _ => {}
        }
    }
    out
}

/// Replaces every `bulkId:<name>` string in `data` by the id `resolved[name]`. If any name is
/// unresolved, `data` is left unchanged and that name is returned: the caller retries later or
/// fails the operation with [`ScimError::unresolved_bulk_id`] (409, RFC 7644 §3.7.1).
pub fn resolve_bulk_ids(
    data: &mut Value,
    resolved: &HashMap<String, String>,
) -> Result<(), String> {
    if let Some(missing) = referenced_bulk_ids(data)
        .into_iter()
        .find(|id| !resolved.contains_key(id))
    {
        return Err(missing);
    }
    let mut stack = vec![data];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => {
                if let Some(id) = s.strip_prefix(BULK_ID_PREFIX).and_then(|n| resolved.get(n)) {
                    *s = id.clone();
                }
            }
            Value::Array(a) => stack.extend(a.iter_mut()),
            Value::Object(o) => stack.extend(o.values_mut()),
            _ => {}
        }
    }
    Ok(())
}

/// One entry of a bulk response's `Operations` (RFC 7644 §3.7.3); `status` is a string there.
pub fn bulk_operation_result(
    op: &BulkOperation,
    location: Option<&str>,
    version: Option<&str>,
    status: u16,
    error: Option<&ScimError>,
) -> Value {
    let mut out = Map::new();
    out.insert("method".into(), json!(op.method.as_str()));
    if let Some(id) = &op.bulk_id {
        out.insert("bulkId".into(), json!(id));
    }
    if let Some(version) = version {
        out.insert("version".into(), json!(version));
    }
    if let Some(location) = location {
        out.insert("location".into(), json!(location));
    }
    out.insert("status".into(), json!(status.to_string()));
    if let Some(error) = error {
        out.insert("response".into(), error.to_json());
    }
    Value::Object(out)
}

pub fn bulk_response(results: Vec<Value>) -> Value {
    json!({"schemas": [BULK_RESPONSE], "Operations": results})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ScimType;

    fn bulk(ops: Value) -> Value {
        json!({"schemas": [BULK_REQUEST], "failOnErrors": 1, "Operations": ops})
    }

    #[test]
    fn parses_operations() {
        let r = BulkRequest::parse(
            bulk(json!([
                {"method": "POST", "path": "/Users", "bulkId": "q1", "data": {"userName": "a"}},
                {"method": "patch", "path": "/Groups/g1", "version": "W/\"3\"", "data": {}},
                {"method": "DELETE", "path": "/Users/u9"}
            ])),
            10,
        )
        .unwrap();
        assert_eq!(r.fail_on_errors, Some(1));
        assert_eq!(r.operations.len(), 3);
        assert_eq!(r.operations[1].method, BulkMethod::Patch);
        assert_eq!(r.operations[1].version.as_deref(), Some("W/\"3\""));
    }

    #[test]
    fn rejects_oversized_and_malformed_requests() {
        let too_many = BulkRequest::parse(
            bulk(Value::Array(vec![
                json!({"method": "DELETE", "path": "/Users/1"});
                3
            ])),
            2,
        )
        .unwrap_err();
        assert_eq!(too_many.status, 413);
        let e = |ops: Value| BulkRequest::parse(bulk(ops), 10).unwrap_err().scim_type;
        assert_eq!(
            e(json!([{"method": "POST", "path": "/Users", "data": {}}])),
            Some(ScimType::InvalidValue)
        );
        assert_eq!(
            e(json!([{"method": "PUT", "path": "/Users/1"}])),
            Some(ScimType::InvalidValue)
        );
        assert_eq!(
            e(json!([{"method": "GET", "path": "/Users/1"}])),
            Some(ScimType::InvalidSyntax)
        );
        assert_eq!(
            e(json!([{"method": "DELETE"}])),
            Some(ScimType::InvalidSyntax)
        );
        assert_eq!(
            e(json!([
                {"method": "POST", "path": "/Users", "bulkId": "x", "data": {}},
                {"method": "POST", "path": "/Groups", "bulkId": "x", "data": {}}
            ])),
            Some(ScimType::InvalidValue)
        );
        assert!(BulkRequest::parse(json!({"Operations": []}), 10).is_err());
        assert!(BulkRequest::parse(
            json!({"schemas": [BULK_REQUEST], "failOnErrors": 0, "Operations": []}),
            10
        )
        .is_err());
    }

    #[test]
    fn bulk_paths() {
        assert_eq!(
            parse_bulk_path("/Users").unwrap(),
            (ResourceKind::User, None)
        );
        assert_eq!(
            parse_bulk_path("/groups/g1").unwrap(),
            (ResourceKind::Group, Some("g1".to_owned()))
        );
        assert_eq!(
            parse_bulk_path("/Groups/bulkId:q").unwrap(),
            (ResourceKind::Group, Some("bulkId:q".to_owned()))
        );
        for bad in ["Users", "/Things", "/Users/", "/Users/a/b", ""] {
            assert_eq!(
                parse_bulk_path(bad).unwrap_err().scim_type,
                Some(ScimType::InvalidPath),
                "{bad}"
            );
        }
    }

    #[test]
    fn resolves_bulk_ids_everywhere_or_not_at_all() {
        let mut data = json!({
            "displayName": "G",
            "members": [{"type": "User", "value": "bulkId:u1"}, {"value": "bulkId:u2"}, {"value": "plain"}],
            "nested": {"deep": ["bulkId:u1"]}
        });
        assert_eq!(referenced_bulk_ids(&data), ["u1", "u2"]);
        let mut resolved = HashMap::new();
        resolved.insert("u1".to_owned(), "id-1".to_owned());
        let before = data.clone();
        assert_eq!(resolve_bulk_ids(&mut data, &resolved), Err("u2".to_owned()));
        assert_eq!(data, before);
        resolved.insert("u2".to_owned(), "id-2".to_owned());
        resolve_bulk_ids(&mut data, &resolved).unwrap();
        assert_eq!(data["members"][0]["value"], "id-1");
        assert_eq!(data["members"][1]["value"], "id-2");
        assert_eq!(data["nested"]["deep"][0], "id-1");
        assert_eq!(data["members"][2]["value"], "plain");
    }

    #[test]
    fn response_shapes() {
        let op = BulkOperation {
            method: BulkMethod::Post,
            bulk_id: Some("q1".into()),
            path: "/Users".into(),
            version: None,
            data: None,
        };
        assert_eq!(
            bulk_operation_result(&op, Some("https://x/Users/1"), Some("W/\"1\""), 201, None),
            json!({"method": "POST", "bulkId": "q1", "location": "https://x/Users/1", "version": "W/\"1\"", "status": "201"})
        );
        let err = ScimError::unresolved_bulk_id("q2");
        let failed = bulk_operation_result(&op, None, None, 409, Some(&err));
        assert_eq!(failed["status"], "409");
        assert_eq!(failed["response"]["scimType"], "invalidValue");
        assert_eq!(
            bulk_response(vec![failed.clone()]),
            json!({"schemas": [BULK_RESPONSE], "Operations": [failed]})
        );
    }
}
