//! How far a run got: a progress line in the log every [`LOG_EVERY`] objects of a phase, and,
//! when a [`ProgressSink`] is attached (the CLI on a terminal), every step for a bar.

use std::sync::Arc;

/// Objects between two progress lines in the log.
const LOG_EVERY: u64 = 5000;

/// Receives every progress step of a run.
pub trait ProgressSink: Send + Sync {
    /// `done` of `total` (when known) objects of `phase` (`import`, `sync`, `export`).
    fn step(&self, phase: &'static str, done: u64, total: Option<u64>);
}

#[derive(Clone, Default)]
pub(crate) struct Progress {
    sink: Option<Arc<dyn ProgressSink>>,
}

impl Progress {
    pub(crate) fn new(sink: Option<Arc<dyn ProgressSink>>) -> Self {
        Self { sink }
    }

    /// Reports that `done` objects of the phase are done, `step` of them since the last report.
    pub(crate) fn step(&self, phase: &'static str, done: u64, step: u64, total: Option<u64>) {
        if let Some(sink) = &self.sink {
            sink.step(phase, done, total);
        }
        let crossed = done / LOG_EVERY != done.saturating_sub(step) / LOG_EVERY;
        if crossed || (total == Some(done) && done >= LOG_EVERY) {
            match total {
                Some(total) => tracing::info!(phase, done, total, "progress"),
                None => tracing::info!(phase, done, "progress"),
            }
        }
    }
}
