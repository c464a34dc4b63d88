//! Import: AD -> the AD connector space. Full import reads everything with a paged search; delta
//! import reads DirSync changes from the stored cookie. Each batch commits with what it covers.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use idbridge_ad::{AdConnector, AdEntry, AdEntryError, AdError, DirSyncBatch};
use idbridge_core::{AttrName, Dn, ObjectGuid};
use idbridge_engine::AdObject;
use idbridge_rules::{Value, AD};

use super::store::{RunCounts, StoreError, Tx};
use super::{SyncContext, SyncError};

/// Object classes the connector space holds (OUs too, for scoping and moves).
const IMPORT_FILTER: &str =
    "(|(objectClass=user)(objectClass=group)(objectClass=contact)(objectClass=organizationalUnit))";
const BATCH: usize = 500;
/// How long a run waits for an unreachable DC (restarting, failing over) before it fails.
const RECONNECT_FOR: Duration = Duration::from_secs(120);
const RECONNECT_MAX_PAUSE: Duration = Duration::from_secs(8);

/// Every attribute the rules may read, plus what the engine needs itself.
fn import_attributes() -> Vec<&'static str> {
    let mut attrs: Vec<&str> = AD.iter().map(|a| a.name).collect();
    attrs.extend(["objectClass", "isDeleted"]);
    attrs
}

fn to_object(entry: AdEntry) -> AdObject {
    let mut object = AdObject {
        guid: entry.guid,
        dn: entry.dn,
        class: entry.class,
        attrs: entry.attrs,
        deleted: entry.deleted,
    };
    object.attrs.insert(
        AttrName::from("distinguishedName"),
        vec![Value::Str(object.dn.to_string())],
    );
    object
}

/// The delta import's connection, kept between polls; the DC's `highestCommittedUSN` when the
/// last pass started, and the cookie that pass returned.
#[derive(Debug)]
pub(crate) struct DeltaConnection {
    connection: AdConnector,
    usn: u64,
    cookie: Vec<u8>,
}

impl SyncContext {
    /// Renames and moves are counted for the synced OUs only; the rest of the domain is noise.
    fn is_rename_in_scope(&self, old: &Dn, new: &Dn) -> bool {
        old != new && (self.scope.ous.contains(old) || self.scope.ous.contains(new))
    }

    /// Runs one read of the DC; when the DC goes away (restart, network), connects again with
    /// backoff and repeats the read from its start. Reads write nothing, so a repeat is safe.
    async fn read_from_dc<T, F, Fut>(&self, what: &str, read: F) -> Result<T, SyncError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, AdError>>,
    {
        let give_up = Instant::now() + RECONNECT_FOR;
        let mut pause = Duration::from_millis(250);
        loop {
            match read().await {
                Err(e) if e.is_transient() && Instant::now() + pause < give_up => {
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis(), "{what}: the DC is unreachable; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RECONNECT_MAX_PAUSE);
                }
                other => return Ok(other?),
            }
        }
    }

    /// The DirSync cookie of "now", then every object (see `full_import` for the order).
    async fn read_directory(&self) -> Result<(Vec<u8>, Vec<AdEntry>, Vec<AdEntryError>), AdError> {
        let mut ad = AdConnector::connect(&self.ad).await?;
        let cookie = ad.current_cookie(&self.base_dn).await?;
        let (entries, errors) = ad
            .search_all(&self.base_dn, IMPORT_FILTER, &import_attributes())
            .await?;
        if let Err(e) = ad.unbind().await {
            tracing::debug!(error = %e, "unbind after full import");
        }
        Ok((cookie, entries, errors))
    }

    /// One DirSync pass on the kept connection, unless nothing can have changed: the DC
    /// committed nothing since the last pass (its `highestCommittedUSN` did not move) and that
    /// pass's cookie is the one stored (its changes were applied). An idle poll then costs the
    /// DC one rootDSE read. A failed pass drops the connection, so the retry connects again.
    async fn read_changes(&self, cookie: &[u8]) -> Result<DirSyncBatch, AdError> {
        let mut kept = self.delta_connection.lock().await;
        let (mut ad, last) = match kept.take() {
            Some(kept) => (kept.connection, Some((kept.usn, kept.cookie))),
            None => (AdConnector::connect(&self.ad).await?, None),
        };
        // Read before the pass: a write committed during the pass moves it again.
        let usn = ad.highest_committed_usn().await?;
        let batch = match last {
            Some((seen, after)) if seen == usn && after == cookie => DirSyncBatch {
                cookie: cookie.to_vec(),
                ..DirSyncBatch::default()
            },
            _ => {
                ad.dirsync(&self.base_dn, IMPORT_FILTER, &import_attributes(), cookie)
                    .await?
            }
        };
        *kept = Some(DeltaConnection {
            connection: ad,
            usn,
            cookie: batch.cookie.clone(),
        });
        Ok(batch)
    }

    async fn record_entry_errors(&self, errors: &[AdEntryError]) -> Result<i64, SyncError> {
        if errors.is_empty() {
            return Ok(0);
        }
        let mut tx = self.store.begin().await?;
        for e in errors {
            tracing::warn!(dn = %e.dn, reason = %e.message, "object not imported");
            tx.set_error(
                &format!("dn:{}", e.dn),
                &e.dn,
                "import",
                &e.message,
                self.now(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(i64::try_from(errors.len()).unwrap_or(i64::MAX))
    }

    /// Reads every object; objects the store holds that AD no longer has are marked deleted.
    /// The DirSync cookie is taken first, so changes made during the import come again in the
    /// next delta (applying a change twice is harmless; missing one is not).
    pub(crate) async fn full_import(&self, counts: &mut RunCounts) -> Result<(), SyncError> {
        let (cookie, entries, errors) = self
            .read_from_dc("full import", || self.read_directory())
            .await?;
        counts.errors += self.record_entry_errors(&errors).await?;
        tracing::info!(objects = entries.len(), "full import read the directory");
        let mut tx = self.store.begin().await?;
        let generation = tx.next_generation().await?;
        tx.commit().await?;
        let total = entries.len() as u64;
        let mut imported = 0u64;
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let mut tx = self.store.begin().await?;
            let mut step = 0u64;
            for entry in entries.by_ref().take(BATCH) {
                step += 1;
                let object = to_object(entry);
                let guid = object.guid.to_string();
                match tx.ad_object(&guid).await? {
                    Some(held) if held == object => tx.touch_ad_object(&guid, generation).await?,
                    held => {
                        if held.is_some_and(|h| self.is_rename_in_scope(&h.dn, &object.dn)) {
                            counts.renames += 1;
                        }
                        tx.put_ad_object(&object, generation).await?;
                    }
                }
            }
            tx.commit().await?;
            imported += step;
            self.progress.step("import", imported, step, Some(total));
        }
        let mut tx = self.store.begin().await?;
        let gone = tx.sweep_unseen(generation).await?;
        tx.set_cookie(&cookie).await?;
        tx.commit().await?;
        if gone > 0 {
            tracing::info!(objects = gone, "objects no longer in AD marked deleted");
        }
        Ok(())
    }

    /// Reads whole the live objects of a DirSync batch that the store cannot complete from
    /// what it holds: unknown ones, and tombstones coming back (restored objects).
    async fn complete(
        &self,
        entries: &[AdEntry],
    ) -> Result<(HashMap<ObjectGuid, AdEntry>, Vec<AdEntryError>), SyncError> {
        let mut partial = Vec::new();
        for entry in entries.iter().filter(|e| !e.deleted) {
            let held = self.store.ad_object(&entry.guid.to_string()).await?;
            if held.is_none_or(|h| h.deleted) {
                partial.push(entry.guid);
            }
        }
        if partial.is_empty() {
            return Ok((HashMap::new(), Vec::new()));
        }
        let (found, errors) = self
            .read_from_dc("reading restored objects", || async {
                let mut ad = AdConnector::connect(&self.ad).await?;
                let read = ad
                    .read_objects(&self.base_dn, &partial, &import_attributes())
                    .await;
                if let Err(e) = ad.unbind().await {
                    tracing::debug!(error = %e, "unbind after reading objects");
                }
                read
            })
            .await?;
        let found = found.into_iter().map(|e| (e.guid, e)).collect();
        Ok((found, errors))
    }

    /// Applies DirSync changes since the stored cookie (a full import when there is none).
    pub(crate) async fn delta_import(&self, counts: &mut RunCounts) -> Result<(), SyncError> {
        let Some(cookie) = self.store.cookie().await? else {
            return self.full_import(counts).await;
        };
        let batch = self
            .read_from_dc("delta import", || self.read_changes(&cookie))
            .await?;
        counts.errors += self.record_entry_errors(&batch.errors).await?;
        let pwd_last_set = AttrName::from("pwdLastSet");
        if let Some(hook) = &self.password_changed {
            if batch
                .entries
                .iter()
                .any(|e| !e.deleted && e.attrs.contains_key(&pwd_last_set))
            {
                hook();
            }
        }
        let mut whole = self.complete(&batch.entries).await?;
        counts.errors += self.record_entry_errors(&whole.1).await?;
        // One transaction: the changes and the cookie that covers them land together.
        let mut tx = self.store.begin().await?;
        let mut moved = Vec::new();
        for entry in batch.entries {
            let complete = whole.0.remove(&entry.guid);
            let delta = to_object(complete.unwrap_or(entry));
            let guid = delta.guid.to_string();
            let object = match tx.ad_object(&guid).await? {
                Some(held) if held.deleted && !delta.deleted => delta,
                Some(mut held) => {
                    if self.is_rename_in_scope(&held.dn, &delta.dn) {
                        counts.renames += 1;
                    }
                    let old_dn = held.dn.clone();
                    held.merge(delta);
                    if held.deleted || held.dn.normalized() != old_dn.normalized() {
                        moved.push((old_dn, (!held.deleted).then(|| held.dn.clone())));
                    }
                    held
                }
                // Deleted before we ever saw it: nothing to do.
                None if delta.deleted => continue,
                None => delta,
            };
            tx.put_ad_object(&object, 0).await?;
        }
        follow_links(&mut tx, &moved).await?;
        tx.set_cookie(&batch.cookie).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Updates the objects linking to renamed (`(old, Some(new))`) or deleted (`(old, None)`)
/// objects as AD updated them, and marks them for sync. After the batch's own entries, so a
/// holder whose new values came in the batch is left alone, and each holder is written once
/// however many of its targets moved (a large group losing many members).
async fn follow_links(tx: &mut Tx, moved: &[(Dn, Option<Dn>)]) -> Result<(), StoreError> {
    // Each holder with whether any of its links changed.
    let mut holders: HashMap<ObjectGuid, (AdObject, bool)> = HashMap::new();
    for (old, new) in moved {
        for held in tx.linking_to(old.normalized()).await? {
            let (holder, changed) = holders.entry(held.guid).or_insert((held, false));
            *changed |= holder.retarget_links(old, new.as_ref());
        }
    }
    for (holder, _) in holders.values().filter(|(_, changed)| *changed) {
        tx.put_ad_object(holder, 0).await?;
    }
    Ok(())
}
