//! A full import followed by synchronization and export while it reads: each imported page is
//! synchronized and exported while the DC sends the next ones, and synchronization goes on
//! while the cloud takes the exports, so a full cycle takes about as long as reading the
//! directory, not reading it, then synchronizing, then writing the cloud.

use std::cell::Cell;
use std::collections::HashMap;

use idbridge_core::Dn;
use tokio::sync::Notify;

use super::export::{ExportPass, Held};
use super::store::RunCounts;
use super::{Outcome, SyncContext, SyncError};

/// Exports held back for references, by the references they wait for: when an object is
/// exported, those waiting only for it can go. Each round then reads just what synchronization
/// queued and what was released, not every pending export again.
#[derive(Default)]
pub(crate) struct Waiting {
    /// DN key -> the held objects referring to it.
    by_target: HashMap<String, Vec<String>>,
    /// Held object -> how many of its references are still missing.
    missing: HashMap<String, usize>,
}

impl Waiting {
    pub(crate) fn hold(&mut self, held: Held) {
        let mut targets = held.waiting_for;
        targets.sort_unstable();
        targets.dedup();
        self.missing.insert(held.guid.clone(), targets.len());
        for target in targets {
            self.by_target
                .entry(target)
                .or_default()
                .push(held.guid.clone());
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.missing.is_empty()
    }

    /// Whether `guid` is held, waiting for a reference.
    pub(crate) fn holds(&self, guid: &str) -> bool {
        self.missing.contains_key(guid)
    }

    /// The held objects whose last missing reference is `dn`, just exported.
    pub(crate) fn exported(&mut self, dn: &str, released: &mut Vec<String>) {
        let Some(key) = Dn::parse(dn).ok().map(|d| d.normalized().to_owned()) else {
            return;
        };
        for guid in self.by_target.remove(&key).unwrap_or_default() {
            if let Some(missing) = self.missing.get_mut(&guid) {
                *missing = missing.saturating_sub(1);
                if *missing == 0 {
                    self.missing.remove(&guid);
                    released.push(guid);
                }
            }
        }
    }
}

impl SyncContext {
    /// The full import of a cycle, with synchronization and export following it: each written
    /// page is synchronized, and each synchronized batch exported while the next ones are
    /// synchronized. What is left when it ends (objects the import found gone, exports still
    /// waiting for references) is for the cycle's usual steps; `pass` carries what the exports
    /// learned to them.
    ///
    /// With a pilot group the import runs alone: the scope depends on the group's members,
    /// which are known only once the group itself is imported.
    pub(crate) async fn import_and_follow(
        &self,
        counts: &mut RunCounts,
        pass: &mut ExportPass,
    ) -> Result<(), SyncError> {
        if self.scope.pilot_group.is_some() {
            return self.full_import(counts, None).await;
        }
        let written = Notify::new();
        let imported = Cell::new(false);
        let mut import_counts = RunCounts::default();
        let import = async {
            let result = self.full_import(&mut import_counts, Some(&written)).await;
            imported.set(true);
            written.notify_one();
            result
        };
        let (queued, to_export) = tokio::sync::mpsc::unbounded_channel();
        let mut sync_counts = RunCounts::default();
        let synchronize = async {
            let queued = queued;
            loop {
                // Read before the round: a round that starts after the import sees all of it.
                let last = imported.get();
                self.synchronize(false, &mut sync_counts, Some(&queued))
                    .await?;
                if last {
                    // Dropping `queued` here tells the export that nothing more comes.
                    return Ok::<_, SyncError>(());
                }
                written.notified().await;
            }
        };
        let export = async {
            // Dropped when the export stops (held, or failed), so synchronization stops queuing.
            let mut to_export = to_export;
            let mut joined_seen = 0;
            let mut released = Vec::new();
            loop {
                let mut next = std::mem::take(&mut released);
                if next.is_empty() {
                    match to_export.recv().await {
                        Some(batch) => next = batch,
                        None => return Ok::<_, SyncError>(()),
                    }
                }
                // What synchronization queued while the last export ran goes out together.
                while let Ok(mut batch) = to_export.try_recv() {
                    next.append(&mut batch);
                }
                pass.next = next;
                // Staging mode or the deletion threshold: the cycle's export says why.
                if !matches!(self.export(counts, pass, true).await?, Outcome::Done) {
                    return Ok(());
                }
                pass.wait_for_references(&mut joined_seen, &mut released);
            }
        };
        let follow = async { tokio::try_join!(synchronize, export) };
        let (imported, followed) = tokio::join!(import, follow);
        counts.add(&import_counts);
        counts.add(&sync_counts);
        // The import's failure first: the follower may have stopped because of it.
        imported?;
        followed.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::{Held, Waiting};

    fn held(guid: &str, targets: &[&str]) -> Held {
        Held {
            guid: guid.into(),
            waiting_for: targets.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn key(dn: &str) -> String {
        idbridge_core::Dn::parse(dn)
            .unwrap()
            .normalized()
            .to_owned()
    }

    #[test]
    fn a_held_export_is_released_when_its_last_reference_is_exported() {
        let mut waiting = Waiting::default();
        let (boss, peer) = ("CN=Boss,OU=Staff,DC=x", "CN=Peer,OU=Staff,DC=x");
        waiting.hold(held("report", &[&key(boss), &key(peer), &key(boss)]));
        waiting.hold(held("group", &[&key(peer)]));
        let mut released = Vec::new();
        waiting.exported("cn=boss,ou=staff,dc=x", &mut released);
        assert!(released.is_empty(), "the report still waits for its peer");
        waiting.exported(peer, &mut released);
        released.sort();
        assert_eq!(released, ["group", "report"]);
        waiting.exported(peer, &mut released);
        assert_eq!(released.len(), 2, "released once");
    }
}
