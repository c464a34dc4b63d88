//! Query parameters, sorting and list responses (RFC 7644 §3.4.2, §3.4.3).

use std::cmp::Ordering;
use std::ops::Range;

use serde_json::{json, Value};

use crate::error::ScimError;
use crate::filter::Filter;
use crate::path::{parse_attribute_list, AttrPath};
use crate::schema::{ResourceKind, LIST_RESPONSE, SEARCH_REQUEST};
use crate::validate::is_primary;
use crate::value::{comparable_def, compare, get_ci, is_unassigned};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortOrder {
    #[default]
    Ascending,
    Descending,
}

impl SortOrder {
    /// `ascending` / `descending` (case-insensitive); anything else is 400 `invalidValue`.
    pub fn parse(s: &str) -> Result<Self, ScimError> {
        if s.eq_ignore_ascii_case("ascending") {
            Ok(Self::Ascending)
        } else if s.eq_ignore_ascii_case("descending") {
            Ok(Self::Descending)
        } else {
            Err(ScimError::invalid_value(format!(
                "sortOrder must be \"ascending\" or \"descending\", not {s:?}"
            )))
        }
    }
}

/// Sorts resources of `kind` by `by` (stable). A multi-valued attribute sorts by its primary
/// value, else its first; complex values by their `value`. Resources without a value sort last
/// in ascending order and first in descending order. An unknown attribute leaves the order as is.
pub fn sort_resources(
    kind: ResourceKind,
    resources: &mut [Value],
    by: &AttrPath,
    order: SortOrder,
) {
    let Some(resolved) = by.resolve(kind) else {
        return;
    };
    let def = resolved.sub.unwrap_or_else(|| comparable_def(resolved.def));
    let key = |resource: &Value| -> Option<Value> {
        let top = resolved.get(resource)?;
        let item = match top {
            Value::Array(a) => a.iter().find(|v| is_primary(v)).or_else(|| a.first())?,
            other => other,
        };
        let leaf = match (resolved.sub, item) {
            (Some(sub), Value::Object(o)) => get_ci(o, sub.name)?,
            (None, Value::Object(o)) => get_ci(o, "value")?,
            (Some(_), _) => return None,
            (None, other) => other,
        };
        (!is_unassigned(leaf)).then(|| leaf.clone())
    };
    let mut keyed: Vec<(Option<Value>, Value)> = resources
        .iter_mut()
        .map(|r| (key(r), std::mem::take(r)))
        .collect();
    keyed.sort_by(|(a, _), (b, _)| {
        let ord = match (a, b) {
            (Some(a), Some(b)) => compare(Some(def), a, b).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        match order {
            SortOrder::Ascending => ord,
            SortOrder::Descending => ord.reverse(),
        }
    });
    for (slot, (_, resource)) in resources.iter_mut().zip(keyed) {
        *slot = resource;
    }
}

/// A list/search request: from `GET` query parameters or a `POST /.search` body.
#[derive(Clone, Debug, PartialEq)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    pub sort_by: Option<AttrPath>,
    pub sort_order: SortOrder,
    /// 1-based; values below 1 are read as 1 (RFC 7644 §3.4.2.4).
    pub start_index: usize,
    /// `None`: no limit requested; negative values are read as 0.
    pub count: Option<usize>,
    pub attributes: Vec<AttrPath>,
    pub excluded_attributes: Vec<AttrPath>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            filter: None,
            sort_by: None,
            sort_order: SortOrder::Ascending,
            start_index: 1,
            count: None,
            attributes: Vec::new(),
            excluded_attributes: Vec::new(),
        }
    }
}

impl ListQuery {
    /// From query parameters (names case-insensitive, unknown ones ignored, the last of a
    /// repeated one wins).
    pub fn from_query_params(params: &[(String, String)]) -> Result<Self, ScimError> {
        let mut query = Self::default();
        for (name, value) in params {
            query.set(name, value)?;
        }
        Ok(query)
    }

    /// From a `POST /.search` body, whose `schemas` must include the SearchRequest URN.
    /// `attributes` may be an array of paths or a comma-separated string.
    pub fn from_search_request(body: &Value) -> Result<Self, ScimError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("the search request must be a JSON object"))?;
        let declared = get_ci(obj, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .any(|u| u.eq_ignore_ascii_case(SEARCH_REQUEST))
            });
        if !declared {
            return Err(ScimError::invalid_syntax(format!(
                "\"schemas\" must include {SEARCH_REQUEST:?}"
            )));
        }
        let mut query = Self::default();
        for (name, value) in obj {
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Array(items) => items
                    .iter()
                    .map(|i| {
                        i.as_str().map(str::to_owned).ok_or_else(|| {
                            ScimError::invalid_value(format!("{name} must contain only strings"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                other => other.to_string(),
            };
            query.set(name, &text)?;
        }
        Ok(query)
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), ScimError> {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("filter") {
            self.filter = Some(Filter::parse(value)?);
        } else if is("sortBy") {
            self.sort_by = Some(AttrPath::parse(value)?);
        } else if is("sortOrder") {
            self.sort_order = SortOrder::parse(value)?;
        } else if is("startIndex") {
            self.start_index =
                usize::try_from(parse_int(name, value)?.max(1)).unwrap_or(usize::MAX);
        } else if is("count") {
            self.count =
                Some(usize::try_from(parse_int(name, value)?.max(0)).unwrap_or(usize::MAX));
        } else if is("attributes") {
            self.attributes = parse_attribute_list(value)?;
        } else if is("excludedAttributes") {
            self.excluded_attributes = parse_attribute_list(value)?;
        }
        Ok(())
    }

    /// The 0-based range of a sorted, filtered result set of `total` resources to return.
    pub fn page_range(&self, total: usize) -> Range<usize> {
        let start = self.start_index.saturating_sub(1).min(total);
        let end = self
            .count
            .map_or(total, |c| start.saturating_add(c).min(total));
        start..end
    }
}

fn parse_int(name: &str, value: &str) -> Result<i64, ScimError> {
    value
        .trim()
        .parse()
        .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer, not {value:?}")))
}

/// A ListResponse (RFC 7644 §3.4.2): `itemsPerPage` is the number of resources returned.
pub fn list_response(total_results: usize, start_index: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total_results,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ScimType;
    use crate::schema::USER_SCHEMA;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn names(resources: &[Value]) -> Vec<&str> {
        resources
            .iter()
            .map(|r| r["id"].as_str().unwrap_or("?"))
            .collect()
    }

    #[test]
    fn query_params_parse_with_clamping() {
        let q = ListQuery::from_query_params(&params(&[
            ("filter", "userName sw \"b\""),
            ("sortBy", "meta.created"),
            ("SortOrder", "DESCENDING"),
            ("startIndex", "-4"),
            ("count", "-1"),
            ("attributes", "userName,emails.value"),
            ("unrelated", "x"),
        ]))
        .unwrap();
        assert!(q.filter.is_some());
        assert_eq!(
            q.sort_by.as_ref().map(ToString::to_string).as_deref(),
            Some("meta.created")
        );
        assert_eq!(q.sort_order, SortOrder::Descending);
        assert_eq!(q.start_index, 1);
        assert_eq!(q.count, Some(0));
        assert_eq!(q.attributes.len(), 2);
        let defaults = ListQuery::from_query_params(&[]).unwrap();
        assert_eq!(defaults, ListQuery::default());
    }

    #[test]
    fn bad_query_params_are_typed_errors() {
        let e = |p: &[(&str, &str)]| {
            ListQuery::from_query_params(&params(p))
                .unwrap_err()
                .scim_type
        };
        assert_eq!(e(&[("sortOrder", "up")]), Some(ScimType::InvalidValue));
        assert_eq!(e(&[("count", "ten")]), Some(ScimType::InvalidValue));
        assert_eq!(
            e(&[("filter", "userName eqq 1")]),
            Some(ScimType::InvalidFilter)
        );
        assert_eq!(e(&[("sortBy", "a..b")]), Some(ScimType::InvalidPath));
    }

    #[test]
    fn search_request_body() {
        let q = ListQuery::from_search_request(&json!({
            "schemas": [SEARCH_REQUEST],
            "attributes": ["displayName", "userName"],
            "excludedAttributes": "emails",
            "filter": "displayName sw \"smith\"",
            "startIndex": 3,
            "count": 10
        }))
        .unwrap();
        assert_eq!(q.attributes.len(), 2);
        assert_eq!(q.excluded_attributes.len(), 1);
        assert_eq!((q.start_index, q.count), (3, Some(10)));
        assert_eq!(q.page_range(5), 2..5);
        assert_eq!(q.page_range(1), 1..1);
        assert!(ListQuery::from_search_request(&json!({"filter": "a pr"})).is_err());
        assert!(ListQuery::from_search_request(
            &json!({"schemas": [SEARCH_REQUEST], "count": 1.5})
        )
        .is_err());
        assert!(ListQuery::from_search_request(
            &json!({"schemas": [SEARCH_REQUEST], "attributes": [1]})
        )
        .is_err());
    }

    #[test]
    fn sorts_strings_case_insensitively_missing_last() {
        let mut rs = vec![
            json!({"schemas": [USER_SCHEMA], "id": "1", "userName": "carol"}),
            json!({"schemas": [USER_SCHEMA], "id": "2"}),
            json!({"schemas": [USER_SCHEMA], "id": "3", "userName": "Alice"}),
            json!({"schemas": [USER_SCHEMA], "id": "4", "userName": "bob"}),
        ];
        let by = AttrPath::simple("userName");
        sort_resources(ResourceKind::User, &mut rs, &by, SortOrder::Ascending);
        assert_eq!(names(&rs), ["3", "4", "1", "2"]);
        sort_resources(ResourceKind::User, &mut rs, &by, SortOrder::Descending);
        assert_eq!(names(&rs), ["2", "1", "4", "3"]);
    }

    #[test]
    fn sorts_multi_valued_by_primary_and_dates_chronologically() {
        let mut rs = vec![
            json!({"id": "1", "emails": [{"value": "z@x"}, {"value": "a@x", "primary": true}],
                   "meta": {"created": "2024-01-01T12:00:00+05:00"}}),
            json!({"id": "2", "emails": [{"value": "m@x"}], "meta": {"created": "2024-01-01T08:00:00Z"}}),
        ];
        sort_resources(
            ResourceKind::User,
            &mut rs,
            &AttrPath::simple("emails"),
            SortOrder::Ascending,
        );
        assert_eq!(names(&rs), ["1", "2"]);
        let created = AttrPath::parse("meta.created").unwrap();
        sort_resources(ResourceKind::User, &mut rs, &created, SortOrder::Descending);
        assert_eq!(names(&rs), ["2", "1"]);
        sort_resources(
            ResourceKind::User,
            &mut rs,
            &AttrPath::simple("nonsense"),
            SortOrder::Ascending,
        );
        assert_eq!(names(&rs), ["2", "1"]);
    }

    #[test]
    fn list_response_shape() {
        assert_eq!(
            list_response(10, 3, vec![json!({"id": "a"})]),
            json!({"schemas": [LIST_RESPONSE], "totalResults": 10, "startIndex": 3, "itemsPerPage": 1, "Resources": [{"id": "a"}]})
        );
    }
}
