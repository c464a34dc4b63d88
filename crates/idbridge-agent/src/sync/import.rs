//! Import: AD -> the AD connector space. Full import reads everything with a paged search; delta
//! import reads DirSync changes from the stored cookie. Each batch commits with what it covers.

use idbridge_ad::{AdConnector, AdEntry, AdEntryError};
use idbridge_core::{AttrName, Dn};
use idbridge_engine::AdObject;
use idbridge_rules::{Value, AD};

use super::store::RunCounts;
use super::{SyncContext, SyncError};

/// Object classes the connector space holds (OUs too, for scoping and moves).
const IMPORT_FILTER: &str =
    "(|(objectClass=user)(objectClass=group)(objectClass=contact)(objectClass=organizationalUnit))";
const BATCH: usize = 500;

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

impl SyncContext {
    /// Renames and moves are counted for the synced OUs only; the rest of the domain is noise.
    fn is_rename_in_scope(&self, old: &Dn, new: &Dn) -> bool {
        old != new && (self.scope.ous.contains(old) || self.scope.ous.contains(new))
    }

    async fn connect(&self) -> Result<AdConnector, SyncError> {
        Ok(AdConnector::connect(&self.ad).await?)
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
        let mut ad = self.connect().await?;
        let cookie = ad
            .dirsync(&self.base_dn, IMPORT_FILTER, &["objectGUID"], &[])
            .await?
            .cookie;
        let (entries, errors) = ad
            .search_all(&self.base_dn, IMPORT_FILTER, &import_attributes())
            .await?;
        if let Err(e) = ad.unbind().await {
            tracing::debug!(error = %e, "unbind after full import");
        }
        counts.errors += self.record_entry_errors(&errors).await?;
        tracing::info!(objects = entries.len(), "full import read the directory");
        let mut tx = self.store.begin().await?;
        let generation = tx.next_generation().await?;
        tx.commit().await?;
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let mut tx = self.store.begin().await?;
            for entry in entries.by_ref().take(BATCH) {
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

    /// Applies DirSync changes since the stored cookie (a full import when there is none).
    pub(crate) async fn delta_import(&self, counts: &mut RunCounts) -> Result<(), SyncError> {
        let Some(cookie) = self.store.cookie().await? else {
            return self.full_import(counts).await;
        };
        let mut ad = self.connect().await?;
        let batch = ad
            .dirsync(&self.base_dn, IMPORT_FILTER, &import_attributes(), &cookie)
            .await?;
        if let Err(e) = ad.unbind().await {
            tracing::debug!(error = %e, "unbind after delta import");
        }
        counts.errors += self.record_entry_errors(&batch.errors).await?;
        // One transaction: the changes and the cookie that covers them land together.
        let mut tx = self.store.begin().await?;
        for entry in batch.entries {
            let delta = to_object(entry);
            let guid = delta.guid.to_string();
            let object = match tx.ad_object(&guid).await? {
                Some(mut held) => {
                    if self.is_rename_in_scope(&held.dn, &delta.dn) {
                        counts.renames += 1;
                    }
                    held.merge(delta);
                    held
                }
                // Deleted before we ever saw it: nothing to do.
                None if delta.deleted => continue,
                None => delta,
            };
            tx.put_ad_object(&object, 0).await?;
        }
        tx.set_cookie(&batch.cookie).await?;
        tx.commit().await?;
        Ok(())
    }
}
