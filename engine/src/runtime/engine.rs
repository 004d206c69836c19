//! [`RunningEngine`]: the handle of a started plan. It owns the engine's cancellation token (a
//! child of the caller's, so that two plans in one process stop and fail independently) and the
//! task that supervises every other: it reports the engine's [`EngineStatus`] as it changes,
//! stops the engine gracefully or at once, and asks for checkpoints.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::error::{EngineError, Result};
use crate::metrics::EngineMetrics;

/// Where a running engine is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineStatus {
    /// Its reference tables are loading: the sources have not started yet.
    Starting,
    Running,
    /// A part stopped with this error (the one that says why); the rest are stopping.
    Failed(String),
    /// Every part has stopped without an error.
    Stopped,
}

/// A started engine. Its tasks run on the tokio runtime until the sources end, [`Self::stop`] or
/// [`Self::abort`] is called, or the token it was started with is cancelled.
pub struct RunningEngine {
    pub(super) metrics: Arc<EngineMetrics>,
    pub(super) token: CancellationToken,
    pub(super) abort: CancellationToken,
    pub(super) status: watch::Receiver<EngineStatus>,
    pub(super) completed: watch::Receiver<u64>,
    pub(super) wanted: Option<Arc<tokio::sync::Notify>>,
    pub(super) supervisor: JoinHandle<Result<()>>,
    pub(super) written: tokio::sync::broadcast::Sender<Written>,
}

/// Rows a sink has written (its alerts), as [`RunningEngine::written`] shows them.
#[derive(Debug, Clone)]
pub struct Written {
    pub sink: String,
    pub batch: datafusion::arrow::record_batch::RecordBatch,
}

impl RunningEngine {
    pub fn metrics(&self) -> Arc<EngineMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Stops gracefully: the sources stop, the queries and sinks drain, and with checkpoints a
    /// last one is taken after the sources' last rows.
    pub fn stop(&self) {
        self.token.cancel();
    }

    /// Ends every task at once, the checkpoint coordinator included: nothing drains and no last
    /// checkpoint is taken (the next start resumes from the one before).
    pub fn abort(&self) {
        self.abort.cancel();
    }

    /// Asks for a checkpoint now rather than at the end of the interval; nothing happens without
    /// checkpoints.
    pub fn request_checkpoint(&self) {
        if let Some(w) = &self.wanted {
            w.notify_one();
        }
    }

    /// The id of the newest completed checkpoint, as it changes (0 before the first).
    pub fn completed_checkpoints(&self) -> watch::Receiver<u64> {
        self.completed.clone()
    }

    /// Every batch of rows a sink writes, once written. A watcher that falls behind skips what
    /// it missed (`Lagged`); it never holds a sink back.
    pub fn written(&self) -> tokio::sync::broadcast::Receiver<Written> {
        self.written.subscribe()
    }

    /// The engine's status, as it changes.
    pub fn status(&self) -> watch::Receiver<EngineStatus> {
        self.status.clone()
    }

    /// Waits until every task has stopped; the error that stopped the engine, if any.
    pub async fn wait(self) -> Result<()> {
        self.supervisor
            .await
            .map_err(|e| EngineError::Internal(format!("the engine's supervisor failed: {e}")))?
    }
}

/// What the supervisor watches besides the tasks.
pub(super) struct Supervised {
    pub tasks: JoinSet<Result<()>>,
    /// The checkpoint coordinator, and the token that tells it every other task has stopped.
    pub coordinator: Option<(JoinHandle<Result<()>>, CancellationToken)>,
    pub abort: CancellationToken,
    pub status: watch::Sender<EngineStatus>,
}

/// Waits for every task; reports the first error as the engine's status as soon as it happens;
/// on abort, ends everything at once.
pub(super) async fn supervise(s: Supervised) -> Result<()> {
    let Supervised {
        mut tasks,
        coordinator,
        abort,
        status,
    } = s;
    let mut errors = FirstError::default();
    let mut aborted = false;
    loop {
        tokio::select! {
            joined = tasks.join_next() => {
                let Some(joined) = joined else { break };
                let result = joined
                    .map_err(|e| EngineError::Internal(format!("a task failed: {e}")))
                    .and_then(|r| r);
                if let Err(e) = result
                    && !(aborted && matches!(e, EngineError::Internal(_)))
                {
                    errors.add(e);
                    if let Some(cause) = &errors.0 {
                        status.send_replace(EngineStatus::Failed(cause.to_string()));
                    }
                }
            }
            _ = abort.cancelled(), if !aborted => {
                aborted = true;
                // The coordinator first: it must not take a last checkpoint of what is aborted.
                if let Some((coordinator, _)) = &coordinator {
                    coordinator.abort();
                }
                tasks.abort_all();
            }
        }
    }
    if let Some((coordinator, done)) = coordinator
        && !aborted
    {
        done.cancel();
        let result = coordinator
            .await
            .map_err(|e| EngineError::Internal(format!("the checkpoints failed: {e}")));
        if let Err(e) = result.and_then(|r| r) {
            errors.add(e);
        }
    }
    match errors.0 {
        Some(e) => {
            status.send_replace(EngineStatus::Failed(e.to_string()));
            Err(e)
        }
        None => {
            status.send_replace(EngineStatus::Stopped);
            Ok(())
        }
    }
}

/// The error a stopped engine reports: the first that says why, before any that only says a part
/// stopped because what it feeds had stopped ([`EngineError::Stopped`]).
#[derive(Default)]
pub(super) struct FirstError(pub(super) Option<EngineError>);

impl FirstError {
    pub(super) fn add(&mut self, e: EngineError) {
        let replace = match &self.0 {
            None => true,
            Some(EngineError::Stopped(_)) => !matches!(e, EngineError::Stopped(_)),
            Some(_) => false,
        };
        if replace {
            self.0 = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_that_says_why_is_reported_before_the_ones_it_caused() {
        let mut errors = FirstError::default();
        errors.add(EngineError::Stopped(
            "source readings: no query reads it".into(),
        ));
        errors.add(EngineError::Limit("query q.sql:5 holds too much".into()));
        errors.add(EngineError::Internal("later".into()));
        assert!(matches!(errors.0, Some(EngineError::Limit(_))));

        let mut only_stopped = FirstError::default();
        only_stopped.add(EngineError::Stopped("first".into()));
        only_stopped.add(EngineError::Stopped("second".into()));
        assert_eq!(only_stopped.0.map(|e| e.to_string()), Some("first".into()));
    }
}
