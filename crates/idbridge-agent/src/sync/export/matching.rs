//! The match searches of provisions, batched: the values a chunk asks for at one join position
//! go to the server as one `or` filter per resource type and path (`p eq "a" or p eq "b"`), and
//! each resource found goes back to the values it holds at the path. A server that refuses `or`
//! filters, pages the answer or compares otherwise than the schema says is asked one value at a
//! time instead, as a lone search would have.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use idbridge_engine::CloudKind;
use idbridge_scim::EqKey;
use idbridge_scim_client::{
    eq_filter, or_filters, ScimClient, ScimClientError, REQUESTS_IN_FLIGHT,
};
use serde_json::Value;

use super::resource_kind;

/// One search a provision needs: resources of a kind whose `path` equals `value`.
pub(super) type Ask<'a> = (CloudKind, &'a str, &'a str);

/// What the search found, or why it failed (shared by the exports that asked the same).
pub(super) type Found = Result<Vec<Value>, Arc<ScimClientError>>;

pub(super) struct Matcher<'c> {
    client: &'c ScimClient,
    /// The server refused an `or` filter: ask one value at a time for the rest of the run.
    or_refused: AtomicBool,
}

impl<'c> Matcher<'c> {
    pub fn new(client: &'c ScimClient) -> Self {
        Self {
            client,
            or_refused: AtomicBool::new(false),
        }
    }

    /// What a search for each ask alone would have found, in the order of `asks`.
    pub async fn search(&self, asks: &[Ask<'_>]) -> Vec<Found> {
        let mut groups: HashMap<(CloudKind, &str), Vec<&str>> = HashMap::new();
        for &(kind, path, value) in asks {
            let values = groups.entry((kind, path)).or_default();
            if !values.contains(&value) {
                values.push(value);
            }
        }
        let searches = groups.iter().map(|(&(kind, path), values)| async move {
            ((kind, path), self.search_values(kind, path, values).await)
        });
        let found: HashMap<_, _> = futures_util::future::join_all(searches)
            .await
            .into_iter()
            .collect();
        asks.iter()
            .map(|&(kind, path, value)| {
                // Every value of a group has its answer.
                found
                    .get(&(kind, path))
                    .and_then(|by_value| by_value.get(value))
                    .cloned()
                    .unwrap_or_else(|| Ok(Vec::new()))
            })
            .collect()
    }

    /// The resources of `kind` holding each of `values` at `path`, by value.
    async fn search_values(
        &self,
        kind: CloudKind,
        path: &str,
        values: &[&str],
    ) -> HashMap<String, Found> {
        let key = EqKey::new(resource_kind(kind), path);
        let key = match key {
            Some(key) if values.len() > 1 && !self.or_refused.load(Ordering::Relaxed) => key,
            _ => return self.one_by_one(kind, path, values).await,
        };
        let batches = or_filters(path, values)
            .into_iter()
            .map(|(filter, batch)| self.search_batch(kind, path, &key, filter, batch));
        let mut found = HashMap::new();
        for part in futures_util::future::join_all(batches).await {
            found.extend(part);
        }
        found
    }

    async fn search_batch(
        &self,
        kind: CloudKind,
        path: &str,
        key: &EqKey,
        filter: String,
        values: Vec<&str>,
    ) -> HashMap<String, Found> {
        // Room for two resources per value, as a lone search asks: a duplicate is a conflict.
        let count = values.len().saturating_mul(2);
        match self
            .client
            .search(resource_kind(kind), &filter, count)
            .await
        {
            Ok(page) if page.complete => match assign(key, &values, page.resources) {
                Some(found) => return found.into_iter().map(|(v, r)| (v, Ok(r))).collect(),
                None => tracing::debug!(%path, "a resource found holds none of the values"),
            },
            Ok(_) => tracing::debug!(%path, "the server paged the results"),
            // Refused: the `or`, or a filter that long (a lone term's refusal is its answer).
            Err(e) if values.len() > 1 && matches!(e.status(), Some(400 | 413)) => {
                if !self.or_refused.swap(true, Ordering::Relaxed) {
                    tracing::info!(error = %e, "the SCIM server refused an `or` filter: \
                        matches are searched one value at a time");
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                return values
                    .iter()
                    .map(|v| ((*v).to_owned(), Err(e.clone())))
                    .collect();
            }
        }
        self.one_by_one(kind, path, &values).await
    }

    async fn one_by_one(
        &self,
        kind: CloudKind,
        path: &str,
        values: &[&str],
    ) -> HashMap<String, Found> {
        let searches = values.iter().map(|value| async move {
            let found = self
                .client
                .search(resource_kind(kind), &eq_filter(path, value), 2)
                .await;
            (
                (*value).to_owned(),
                found.map(|p| p.resources).map_err(Arc::new),
            )
        });
        futures_util::stream::iter(searches)
            .buffer_unordered(REQUESTS_IN_FLIGHT)
            .collect()
            .await
    }
}

/// Hands each resource found to the values it holds at the key's path: by value, what a search
/// for that value alone finds. `None` when a resource holds none of them: the server compared
/// otherwise than the key does, so the results cannot be told apart.
fn assign(
    key: &EqKey,
    values: &[&str],
    resources: Vec<Value>,
) -> Option<HashMap<String, Vec<Value>>> {
    let mut by_key: HashMap<String, Vec<Value>> =
        values.iter().map(|v| (key.fold(v), Vec::new())).collect();
    for resource in resources {
        let held: HashSet<String> = key
            .values_in(&resource)
            .into_iter()
            .filter(|v| by_key.contains_key(v))
            .collect();
        if held.is_empty() {
            return None;
        }
        for k in held {
            if let Some(found) = by_key.get_mut(&k) {
                found.push(resource.clone());
            }
        }
    }
    Some(
        values
            .iter()
            .map(|v| {
                let found = by_key.get(&key.fold(v)).cloned().unwrap_or_default();
                ((*v).to_owned(), found)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use idbridge_scim::ResourceKind;
    use serde_json::json;

    const ANCHOR: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User:immutableId";
    const WORK_MAIL: &str = r#"emails[type eq "work"].value"#;

    fn key(path: &str) -> EqKey {
        EqKey::new(ResourceKind::User, path).unwrap()
    }

    fn user(id: &str, user_name: &str, anchor: Option<&str>, mail: &str) -> Value {
        let mut doc = json!({
            "id": id,
            "userName": user_name,
            "emails": [{"type": "home", "value": "home@x"}, {"type": "work", "value": mail}],
        });
        if let Some(anchor) = anchor {
            doc["urn:idbridge:params:scim:schemas:extension:sync:2.0:User"] =
                json!({"immutableId": anchor});
        }
        doc
    }

    fn ids(found: &HashMap<String, Vec<Value>>, value: &str) -> Vec<String> {
        found[value]
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn results_go_back_to_the_values_they_hold() {
        let resources = vec![
            user("1", "Ann@Lab.Test", Some("QUFB"), "ann@work.test"),
            user("2", "bob@lab.test", None, "BOB@Work.Test"),
            user("3", "bob2@lab.test", None, "bob@work.test"),
        ];
        // userName is not caseExact: any case matches.
        let found = assign(
            &key("userName"),
            &["ann@lab.test", "BOB@LAB.TEST", "cy@lab.test"],
            resources[..2].to_vec(),
        )
        .unwrap();
        assert_eq!(ids(&found, "ann@lab.test"), ["1"]);
        assert_eq!(ids(&found, "BOB@LAB.TEST"), ["2"]);
        assert!(ids(&found, "cy@lab.test").is_empty());
        // Two resources with one value: both go to it (the conflict rule sees them).
        let found = assign(
            &key(WORK_MAIL),
            &["bob@work.test", "ann@work.test"],
            resources.clone(),
        )
        .unwrap();
        assert_eq!(ids(&found, "bob@work.test"), ["2", "3"]);
        assert_eq!(ids(&found, "ann@work.test"), ["1"]);
        // The anchor is caseExact: a value differing in case only is another anchor.
        let found = assign(&key(ANCHOR), &["QUFB", "qufb"], resources[..1].to_vec()).unwrap();
        assert_eq!(ids(&found, "QUFB"), ["1"]);
        assert!(ids(&found, "qufb").is_empty());
        // Values equal once folded share their results.
        let found = assign(
            &key("userName"),
            &["bob@lab.test", "Bob@Lab.Test"],
            resources[1..2].to_vec(),
        )
        .unwrap();
        assert_eq!(ids(&found, "bob@lab.test"), ["2"]);
        assert_eq!(ids(&found, "Bob@Lab.Test"), ["2"]);
    }

    #[test]
    fn a_result_holding_none_of_the_values_voids_the_batch() {
        // A server matching the anchor case-insensitively returned what we did not ask for.
        let resources = vec![user("1", "a@x", Some("QUFB"), "a@x")];
        assert!(assign(&key(ANCHOR), &["qufb", "QkJC"], resources).is_none());
    }
}
