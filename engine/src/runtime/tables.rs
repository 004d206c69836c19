//! Reference tables: each loaded before any source starts (so no row misses its lookup), then
//! loaded again every `refresh`, a failed reload keeping the rows of the last good one.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::error::{ConnectorError, EngineError, Result};
use crate::plan::PlannedTable;

/// How far the first loads of a plan's tables are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TablesLoading {
    /// Tables not loaded yet.
    pub left: usize,
    /// A table's first load failed: the engine stops, and its sources do not start.
    pub failed: bool,
}

impl TablesLoading {
    /// The sources may start.
    pub fn done(&self) -> bool {
        self.left == 0
    }
}

/// Loads a reference table, tells the sources when it is there, and reloads it every `refresh`
/// until `shutdown` or until no source waits on `loading` any more (they have all ended). A first
/// load that fails is the engine's error (its sources never start).
pub(super) async fn load_table(
    table: PlannedTable,
    loading: Arc<watch::Sender<TablesLoading>>,
    shutdown: CancellationToken,
) -> Result<()> {
    let first = tokio::select! {
        r = table.table.load() => r,
        _ = shutdown.cancelled() => return Ok(()),
    };
    match first {
        Ok(rows) => {
            info!(table = %table.name, "loaded {} rows", rows.num_rows());
            table.snapshot.replace(rows);
            loading.send_modify(|l| l.left = l.left.saturating_sub(1));
        }
        Err(e) => {
            error!(table = %table.name, "cannot load: {e}");
            loading.send_modify(|l| l.failed = true);
            return Err(EngineError::Connector(ConnectorError {
                message: format!("table {}: {}", table.name, e.message),
                retryable: e.retryable,
                rows: None,
            }));
        }
    }
    let Some(every) = table.refresh else {
        return Ok(());
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return Ok(()),
            _ = loading.closed() => return Ok(()),
        }
        match table.table.load().await {
            Ok(rows) => {
                debug!(table = %table.name, "reloaded {} rows", rows.num_rows());
                table.snapshot.replace(rows);
            }
            Err(e) => {
                warn!(table = %table.name, "reload failed, keeping the rows loaded before: {e}")
            }
        }
    }
}
