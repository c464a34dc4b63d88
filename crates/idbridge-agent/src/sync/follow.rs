//! A full import followed by synchronization and export while it reads: each imported page is
//! synchronized and exported while the DC sends the next ones, and synchronization goes on
//! while the cloud takes the exports, so a full cycle takes about as long as reading the
//! directory, not reading it, then synchronizing, then writing the cloud.

use std::cell::Cell;

use tokio::sync::Notify;

use super::export::{ExportPass, Exports};
use super::store::RunCounts;
use super::{SyncContext, SyncError};

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
            // Staging mode or the deletion threshold: the cycle's export says why.
            self.export(counts, pass, Exports::Queued(&mut to_export), true)
                .await
                .map(|_| ())
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
