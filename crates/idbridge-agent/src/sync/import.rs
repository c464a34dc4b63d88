//! Import: AD -> the AD connector space. Full import reads everything with a paged search; delta
//! import reads DirSync changes from the stored cookie. Each batch commits with what it covers.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use idbridge_ad::{AdConnector, AdEntry, AdEntryError, AdError, Page, PagedSearch};
use idbridge_core::{AttrName, Dn, ObjectGuid};
use idbridge_engine::AdObject;
use idbridge_rules::{Value, AD};
use tokio::sync::{mpsc, Notify};

use super::store::{RunCounts, StoreError, Tx};
use super::{SyncContext, SyncError};

/// Object classes the connector space holds (OUs too, for scoping and moves).
const IMPORT_FILTER: &str =
    "(|(objectClass=user)(objectClass=group)(objectClass=contact)(objectClass=organizationalUnit))";
/// The most objects a full import writes in one transaction (pages of 1,000 that queued up).
const MAX_IMPORT_WRITE: usize = 4000;
/// How long a run waits for an unreachable DC (restarting, failing over) before it fails.
const RECONNECT_FOR: Duration = Duration::from_secs(120);
const RECONNECT_MAX_PAUSE: Duration = Duration::from_secs(8);

/// Every attribute the rules may read, plus what the engine needs itself. With `member_range`,
/// members are asked for in ranges of that size (the connector reads the rest of a larger
/// group); DirSync passes take them as the DC sends them.
fn import_attributes(member_range: Option<u32>) -> Vec<String> {
    let mut attrs: Vec<String> = AD
        .iter()
        .map(|a| match member_range {
            Some(size) if a.name.eq_ignore_ascii_case("member") => {
                format!("member;range=0-{}", size.saturating_sub(1))
            }
            _ => a.name.to_owned(),
        })
        .collect();
    attrs.extend(["objectClass".to_owned(), "isDeleted".to_owned()]);
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

/// The filters that split a full import into `shares` reads by `uSNCreated` (indexed), in
/// spans of equal width up to `highest`: an object's `uSNCreated` never changes, so each object
/// is in exactly one share whatever happens to it during the import; the last share is open, for
/// objects created meanwhile. One share reads everything.
fn usn_shares(highest: u64, shares: u32) -> impl Iterator<Item = String> {
    let shares = u64::from(shares.max(1));
    let bound = move |i: u64| {
        u64::try_from(u128::from(highest) * u128::from(i) / u128::from(shares)).unwrap_or(highest)
    };
    (0..shares).map(move |i| {
        let from = (i > 0).then(|| format!("(uSNCreated>={})", bound(i) + 1));
        let through = (i + 1 < shares).then(|| format!("(uSNCreated<={})", bound(i + 1)));
        format!(
            "{}{}",
            from.unwrap_or_default(),
            through.unwrap_or_default()
        )
    })
}

/// The longest span of USNs a delta reads by `uSNChanged` equality
/// ([`AdConnector::changed_in`]); a longer one (a burst of writes) costs a DirSync pass.
const MAX_USN_SPAN: u64 = 500;
/// While USN reads keep up, a DirSync pass still runs this often, so the stored cookie (where a
/// restarted agent resumes) stays recent.
const DIRSYNC_AT_LEAST_EVERY: Duration = Duration::from_secs(600);

/// The delta import's connection, kept between polls, with what the store holds from it.
#[derive(Debug)]
pub(crate) struct DeltaConnection {
    connection: AdConnector,
    applied: Option<Applied>,
}

/// Changes the DC committed through `usn` are in the store, whose cookie is `cookie`.
#[derive(Debug)]
struct Applied {
    usn: u64,
    cookie: Vec<u8>,
    dirsync_at: Instant,
}

/// What a delta read found.
enum DeltaRead {
    Changes(Changes),
    /// More changes since the last delta than one DirSync pass should hold in memory (its
    /// answer arrives whole): the caller imports the directory page by page instead.
    Backlog {
        span: u64,
    },
}

/// What one delta read brought.
struct Changes {
    entries: Vec<AdEntry>,
    errors: Vec<AdEntryError>,
    /// The entries are whole objects (a USN read), not DirSync's changed attributes.
    whole: bool,
    /// The cookie covering them: a DirSync pass's, or the stored one for a USN read.
    cookie: Vec<u8>,
    /// The DC's `highestCommittedUSN` before the read: every change through it is in.
    usn: u64,
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

    /// The DC's USN and DirSync cookie of "now", then every object, page by page into `pages`
    /// (see `full_import` for the order). The objects are read in `import_connections` shares
    /// side by side (see [`usn_shares`]). Stops early when the receiver is gone (the writer
    /// failed).
    async fn read_directory(&self, pages: &mpsc::Sender<Page>) -> Result<(Vec<u8>, u64), AdError> {
        let mut ad = AdConnector::connect(&self.ad).await?;
        // Before the cookie, which then covers at least every change through it.
        let usn = ad.highest_committed_usn().await?;
        let cookie = ad.current_cookie(&self.base_dn).await?;
        let attrs = import_attributes(Some(self.member_range_size));
        let mut first = Some(ad);
        let reads = usn_shares(usn, self.import_connections).map(|share| {
            let filter = format!("(&{IMPORT_FILTER}{share})");
            self.read_share(first.take(), filter, &attrs, pages)
        });
        futures_util::future::try_join_all(reads).await?;
        Ok((cookie, usn))
    }

    /// Reads the objects matching `filter`, on `connection` or a new one.
    async fn read_share(
        &self,
        connection: Option<AdConnector>,
        filter: String,
        attrs: &[String],
        pages: &mpsc::Sender<Page>,
    ) -> Result<(), AdError> {
        let mut ad = match connection {
            Some(ad) => ad,
            None => AdConnector::connect(&self.ad).await?,
        };
        let mut search = PagedSearch::new(&self.base_dn, &filter, attrs);
        while let Some(page) = ad.next_page(&mut search).await? {
            if pages.send(page).await.is_err() {
                break;
            }
        }
        if let Err(e) = ad.unbind().await {
            tracing::debug!(error = %e, "unbind after full import");
        }
        Ok(())
    }

    /// Reads what changed since the store's `cookie`, on the kept connection. Nothing, when the
    /// DC committed nothing since the changes last applied (its `highestCommittedUSN` did not
    /// move): an idle poll costs the DC one rootDSE read. The objects whose `uSNChanged` is in
    /// the span since then, when the span is short: an indexed read, where a DirSync pass costs
    /// Samba a scan of the naming context. A backlog longer than `sync.max_dirsync_changes`
    /// (`applied_usn`: where the store says it is, after a restart) is left to a full import.
    /// Otherwise a DirSync pass. A failed read drops the connection, so the retry connects
    /// again.
    async fn read_changes(
        &self,
        cookie: &[u8],
        applied_usn: Option<u64>,
    ) -> Result<DeltaRead, AdError> {
        let mut kept = self.delta_connection.lock().await;
        let (mut ad, applied) = match kept.take() {
            Some(kept) => (kept.connection, kept.applied),
            None => (AdConnector::connect(&self.ad).await?, None),
        };
        // Only while the store still holds what was applied here (a full import resets it).
        let applied = applied.filter(|a| a.cookie == cookie);
        // Read before the changes: a write committed meanwhile moves it again.
        let usn = ad.highest_committed_usn().await?;
        let span = usn.saturating_sub(
            applied
                .as_ref()
                .map_or(applied_usn, |a| Some(a.usn))
                .unwrap_or(usn),
        );
        if span > self.max_dirsync_changes {
            *kept = Some(DeltaConnection {
                connection: ad,
                applied: None,
            });
            return Ok(DeltaRead::Backlog { span });
        }
        let mut changes = Changes {
            entries: Vec::new(),
            errors: Vec::new(),
            whole: true,
            cookie: cookie.to_vec(),
            usn,
        };
        match &applied {
            Some(a) if a.usn == usn => {}
            Some(a)
                if usn > a.usn
                    && usn - a.usn <= MAX_USN_SPAN
                    && a.dirsync_at.elapsed() < DIRSYNC_AT_LEAST_EVERY =>
            {
                (changes.entries, changes.errors) = ad
                    .changed_in(
                        &self.base_dn,
                        IMPORT_FILTER,
                        &import_attributes(Some(self.member_range_size)),
                        a.usn + 1..=usn,
                    )
                    .await?;
                tracing::debug!(
                    span = usn - a.usn,
                    objects = changes.entries.len(),
                    "delta read by USN"
                );
            }
            _ => {
                let batch = ad
                    .dirsync(
                        &self.base_dn,
                        IMPORT_FILTER,
                        &import_attributes(None),
                        cookie,
                    )
                    .await?;
                changes.entries = batch.entries;
                changes.errors = batch.errors;
                changes.cookie = batch.cookie;
                changes.whole = false;
            }
        }
        *kept = Some(DeltaConnection {
            connection: ad,
            applied,
        });
        Ok(DeltaRead::Changes(changes))
    }

    /// Records that `changes` are committed to the store.
    async fn changes_applied(&self, changes: &Changes) {
        if let Some(kept) = self.delta_connection.lock().await.as_mut() {
            let dirsync_at = match &kept.applied {
                Some(a) if changes.whole => a.dirsync_at,
                _ => Instant::now(),
            };
            kept.applied = Some(Applied {
                usn: changes.usn,
                cookie: changes.cookie.clone(),
                dirsync_at,
            });
        }
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
    /// next delta (applying a change twice is harmless; missing one is not). Pages are written
    /// while the next ones are read, so memory holds a few pages, not the directory. `written`,
    /// when given, is notified after each page commits.
    pub(crate) async fn full_import(
        &self,
        counts: &mut RunCounts,
        written: Option<&Notify>,
    ) -> Result<(), SyncError> {
        let mut tx = self.store.begin().await?;
        let generation = tx.next_generation().await?;
        tx.commit().await?;
        // Room for a page from each reader and one more.
        let capacity = usize::try_from(self.import_connections).unwrap_or(1) + 1;
        let (pages_tx, mut pages) = mpsc::channel::<Page>(capacity);
        let read = async move {
            let read = self
                .read_from_dc("full import", || self.read_directory(&pages_tx))
                .await;
            drop(pages_tx);
            read
        };
        let write = async {
            let mut imported = 0u64;
            while let Some(mut page) = pages.recv().await {
                // Pages that arrived while the last ones were written go in one transaction:
                // each rewrites the index pages it touches, so a writer that falls behind the
                // readers catches up with fewer, larger ones.
                while page.entries.len() < MAX_IMPORT_WRITE {
                    let Ok(more) = pages.try_recv() else { break };
                    page.entries.extend(more.entries);
                    page.errors.extend(more.errors);
                }
                counts.errors += self.record_entry_errors(&page.errors).await?;
                let step = page.entries.len() as u64;
                self.import_page(page.entries, generation, counts).await?;
                if let Some(written) = written {
                    written.notify_one();
                }
                imported += step;
                self.progress.step("import", imported, step, None);
            }
            Ok::<_, SyncError>(imported)
        };
        let (read, imported) = tokio::join!(read, write);
        // The writer's failure first: it is why the reader stopped.
        let imported = imported?;
        let (cookie, usn) = read?;
        tracing::info!(objects = imported, "full import read the directory");
        let mut tx = self.store.begin().await?;
        let gone = tx.sweep_unseen(generation).await?;
        tx.set_cookie(&cookie, usn).await?;
        tx.commit().await?;
        if gone > 0 {
            tracing::info!(objects = gone, "objects no longer in AD marked deleted");
        }
        Ok(())
    }

    /// Writes a page of a full import (or the pages that queued up), in one transaction. What
    /// the store already holds is read for the page at once, and unchanged objects are only
    /// marked seen, together.
    async fn import_page(
        &self,
        entries: Vec<AdEntry>,
        generation: i64,
        counts: &mut RunCounts,
    ) -> Result<(), SyncError> {
        let objects: Vec<AdObject> = entries.into_iter().map(to_object).collect();
        let guids: Vec<String> = objects.iter().map(|o| o.guid.to_string()).collect();
        let guid_refs: Vec<&str> = guids.iter().map(String::as_str).collect();
        let mut tx = self.store.begin().await?;
        let held = tx.stored_ad_objects(&guid_refs).await?;
        let mut unchanged = Vec::new();
        let mut changed = Vec::new();
        for (object, guid) in objects.iter().zip(guid_refs) {
            match held.get(guid) {
                Some(held) if held.holds(object) => unchanged.push(guid),
                held => {
                    let old_dn = held.and_then(|h| Dn::parse(&h.dn).ok());
                    if old_dn.is_some_and(|old| self.is_rename_in_scope(&old, &object.dn)) {
                        counts.renames += 1;
                    }
                    changed.push(object);
                }
            }
        }
        tx.put_ad_objects(&changed, generation).await?;
        tx.touch_ad_objects(&unchanged, generation).await?;
        tx.commit().await?;
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
                    .read_objects(
                        &self.base_dn,
                        &partial,
                        &import_attributes(Some(self.member_range_size)),
                    )
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

    /// Applies the changes since the stored cookie (a full import when there is none).
    pub(crate) async fn delta_import(&self, counts: &mut RunCounts) -> Result<(), SyncError> {
        let Some(cookie) = self.store.cookie().await? else {
            return self.full_import(counts, None).await;
        };
        let applied_usn = self.store.applied_usn().await?;
        let mut changes = match self
            .read_from_dc("delta import", || self.read_changes(&cookie, applied_usn))
            .await?
        {
            DeltaRead::Changes(changes) => changes,
            DeltaRead::Backlog { span } => {
                tracing::info!(
                    changes = span,
                    limit = self.max_dirsync_changes,
                    "more changes since the last delta than one DirSync pass may hold \
                     (sync.max_dirsync_changes): reading the directory page by page"
                );
                return self.full_import(counts, None).await;
            }
        };
        counts.errors += self.record_entry_errors(&changes.errors).await?;
        let mut whole = if changes.whole {
            (HashMap::new(), Vec::new())
        } else {
            self.complete(&changes.entries).await?
        };
        counts.errors += self.record_entry_errors(&whole.1).await?;
        let pwd_last_set = AttrName::from("pwdLastSet");
        let mut password_changed = Vec::new();
        // One transaction: the changes and the cookie that covers them land together.
        let mut tx = self.store.begin().await?;
        let mut moved = Vec::new();
        for entry in std::mem::take(&mut changes.entries) {
            let complete = whole.0.remove(&entry.guid);
            let delta = to_object(complete.unwrap_or(entry));
            let guid = delta.guid.to_string();
            let held = tx.ad_object(&guid).await?;
            if !delta.deleted
                && delta.attrs.get(&pwd_last_set).is_some_and(|new| {
                    held.as_ref()
                        .is_none_or(|h| h.attrs.get(&pwd_last_set) != Some(new))
                })
            {
                password_changed.push(delta.guid);
            }
            let object = match held {
                Some(held) if held.deleted && !delta.deleted => delta,
                Some(mut held) => {
                    if self.is_rename_in_scope(&held.dn, &delta.dn) {
                        counts.renames += 1;
                    }
                    let old_dn = held.dn.clone();
                    if changes.whole && !delta.deleted {
                        // A whole read also says which attributes were cleared.
                        held = delta;
                    } else {
                        held.merge(delta);
                    }
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
        tx.set_cookie(&changes.cookie, changes.usn).await?;
        tx.commit().await?;
        self.changes_applied(&changes).await;
        if !password_changed.is_empty() {
            if let Some(hook) = &self.password_changed {
                hook(&password_changed);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::usn_shares;

    /// The USN span a share's filter selects, as (from, through) bounds.
    fn bounds(share: &str) -> (u64, u64) {
        let value = |op: &str| {
            share
                .split(op)
                .nth(1)
                .and_then(|rest| rest.split(')').next())
                .map(|n| n.parse::<u64>().unwrap())
        };
        (
            value("uSNCreated>=").unwrap_or(0),
            value("uSNCreated<=").unwrap_or(u64::MAX),
        )
    }

    #[test]
    fn shares_cover_every_usn_once() {
        assert_eq!(usn_shares(1000, 1).collect::<Vec<_>>(), [""]);
        assert_eq!(
            usn_shares(1000, 2).collect::<Vec<_>>(),
            ["(uSNCreated<=500)", "(uSNCreated>=501)"]
        );
        for highest in [0, 1, 2, 7, 1000, 123_457, u64::MAX - 1] {
            for count in 1..=8 {
                let shares: Vec<(u64, u64)> =
                    usn_shares(highest, count).map(|s| bounds(&s)).collect();
                assert_eq!(shares.len(), count as usize);
                assert_eq!(shares[0].0, 0);
                assert_eq!(shares.last().unwrap().1, u64::MAX, "the last share is open");
                for pair in shares.windows(2) {
                    let ((_, through), (from, _)) = (pair[0], pair[1]);
                    assert_eq!(from, through + 1, "{highest} in {count}: {shares:?}");
                }
            }
        }
    }
}
