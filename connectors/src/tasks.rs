//! Stopping a connector's background task without letting a broker that does not answer hold the
//! engine's shutdown.

use std::time::Duration;

use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Waits at most `wait` for `task` to end, then aborts it.
pub async fn join_within<T>(task: &mut JoinHandle<T>, wait: Duration) {
    if tokio::time::timeout(wait, &mut *task).await.is_err() {
        task.abort();
    }
}

/// Cancels `stop`, then waits at most `wait` for `task` (which `stop` ends) before aborting it.
pub fn cancel_and_join(
    stop: CancellationToken,
    mut task: JoinHandle<()>,
    wait: Duration,
) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        stop.cancel();
        join_within(&mut task, wait).await;
    })
}
