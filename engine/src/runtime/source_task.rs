//! A source's tasks: the connector reading into its [`SourceContext`] once the reference tables
//! are loaded, its dead-letter sink, its idle clock, and the barriers of checkpoints.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::barriers::{Ack, Checkpointing};
use super::sink::{FailedRows, run_sink};
use super::tables::TablesLoading;
use super::{CheckpointConfig, SINK_CHANNEL};
use crate::checkpoint::SourceCheckpoint;
use crate::connector::{Emitter, SourceContext};
use crate::error::{ConnectorError, EngineError, Result};
use crate::fanout::Fanout;
use crate::message::SinkInput;
use crate::metrics::{SinkMetrics, SourceMetrics};
use crate::plan::PlannedSource;

/// What every source of an engine is wired to.
pub(super) struct SourceWiring<'a> {
    pub checkpointing: Option<&'a Checkpointing>,
    pub checkpoints: Option<&'a CheckpointConfig>,
    /// The senders of the plan's sinks, for late rows.
    pub sinks: &'a [mpsc::Sender<SinkInput>],
    pub tables: &'a watch::Receiver<TablesLoading>,
    pub shutdown: &'a CancellationToken,
    /// Where sources note when the rows behind each watermark arrived.
    pub arrivals: &'a Arc<crate::metrics::WatermarkArrivals>,
}

/// Spawns the tasks of source `index` into `tasks`, resumed from `resumed` when there is a
/// checkpoint; its rows go to `outputs`.
pub(super) fn spawn_source(
    tasks: &mut JoinSet<Result<()>>,
    index: usize,
    s: PlannedSource,
    outputs: Fanout,
    resumed: Option<SourceCheckpoint>,
    metrics: Arc<SourceMetrics>,
    wiring: &SourceWiring,
) {
    let dead_letter_tx = s.dead_letter.map(|sink| {
        let (tx, rx) = mpsc::channel(SINK_CHANNEL);
        let dm = Arc::new(SinkMetrics::new(&format!("{} dead letters", s.name)));
        let barriers = wiring.checkpointing.map(|c| (1, c.acks.clone()));
        tasks.spawn(run_sink(
            format!("{}.dead_letter", s.name),
            sink,
            rx,
            dm,
            FailedRows::default(),
            barriers,
            // Dead letters are not alerts: nobody watches what this sink writes.
            tokio::sync::broadcast::channel(1).0,
        ));
        tx
    });
    let mut ctx = SourceContext::new(
        &s.name,
        Arc::clone(&s.schema),
        s.event_time.clone(),
        outputs,
        Arc::clone(&metrics),
        dead_letter_tx,
        wiring.shutdown.child_token(),
    )
    .with_late_rows(s.late_sink.map(|k| wiring.sinks[k].clone()))
    .with_max_future(s.max_future)
    .with_arrivals(Arc::clone(wiring.arrivals));
    if let Some(state) = &resumed {
        ctx = ctx.restored(state);
    }
    if let (Some(c), Some(config)) = (wiring.checkpointing, wiring.checkpoints) {
        ctx = ctx
            .with_checkpoints(c.completed.clone(), Arc::clone(&c.wanted))
            .with_durable_dir(source_dir(&config.dir, &s.name));
    }
    let ended = wiring.shutdown.child_token();
    // Cancelled when the connector has stopped reading, whatever the reason.
    let stopped = CancellationToken::new();
    // Cancelled when the input has ended (or failed): no barrier can follow.
    let finished = CancellationToken::new();
    if let Some(idle) = s.idle_timeout {
        tasks.spawn(idle_clock(
            ctx.emitter(),
            idle,
            Arc::clone(&metrics),
            ended.clone(),
        ));
    }
    if let Some(c) = wiring.checkpointing {
        tasks.spawn(inject_barriers(
            index,
            ctx.emitter(),
            c.clone(),
            stopped.clone(),
            finished.clone(),
        ));
    }
    let reading = Reading {
        name: s.name,
        acks: wiring.checkpointing.map(|c| c.acks.clone()),
        ended,
        stopped,
        finished,
    };
    tasks.spawn(reading.run(s.connector, ctx, wiring.tables.clone()));
}

/// The connector's run and what its end means for the rest of the engine.
struct Reading {
    name: String,
    acks: Option<mpsc::UnboundedSender<Ack>>,
    ended: CancellationToken,
    stopped: CancellationToken,
    finished: CancellationToken,
}

impl Reading {
    async fn run(
        self,
        connector: Box<dyn crate::connector::Source>,
        mut ctx: SourceContext,
        mut tables: watch::Receiver<TablesLoading>,
    ) -> Result<()> {
        let Self {
            name,
            acks,
            ended,
            stopped,
            finished,
        } = self;
        let _stopped = stopped.drop_guard();
        tokio::select! {
            loaded = tables.wait_for(|t| t.done() || t.failed) => {
                if !loaded.is_ok_and(|t| t.done() && !t.failed) {
                    ended.cancel();
                    finished.cancel();
                    return Ok(());
                }
            }
            _ = ctx.shutdown().cancelled() => {
                ended.cancel();
                return Ok(());
            }
        }
        // `tables` lives on while the source reads: tables refresh until every source has ended.
        let result = connector.run(&mut ctx).await;
        drop(tables);
        ended.cancel();
        let source_ended = || {
            if let Some(acks) = &acks {
                let _ = acks.send(Ack::SourceEnded { name: name.clone() });
            }
        };
        match result {
            Ok(()) if !ctx.shutdown().is_cancelled() => {
                info!(source = %name, "input ended");
                source_ended();
                ctx.finish().await;
                finished.cancel();
                Ok(())
            }
            Ok(()) => {
                let _ = ctx.flush().await;
                Ok(())
            }
            Err(e) => {
                let _ = ctx.flush().await;
                finished.cancel();
                source_ended();
                if ctx.unread().await {
                    return Err(EngineError::Stopped(format!(
                        "source {name}: {}",
                        e.message
                    )));
                }
                error!(source = %name, "stopped: {e}");
                Err(EngineError::Connector(ConnectorError {
                    message: format!("source {name}: {}", e.message),
                    retryable: e.retryable,
                    rows: None,
                }))
            }
        }
    }
}

/// The directory of a source's own files under the state directory: `DIR/sources/<name>`, the
/// name kept to letters, digits, `-` and `_`.
fn source_dir(state: &std::path::Path, name: &str) -> std::path::PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    state.join("sources").join(safe)
}

/// Sends a source's barriers: for each checkpoint asked, under the lock the source's rows go out
/// under, so the position it reports is exactly that of the rows before the barrier. The last
/// checkpoint before stopping waits until the source has stopped reading (`stopped`), so that no
/// row follows its barrier.
async fn inject_barriers(
    index: usize,
    emitter: Arc<tokio::sync::Mutex<Emitter>>,
    mut checkpointing: Checkpointing,
    stopped: CancellationToken,
    finished: CancellationToken,
) -> Result<()> {
    loop {
        tokio::select! {
            changed = checkpointing.requests.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = finished.cancelled() => return Ok(()),
        }
        let request = *checkpointing.requests.borrow_and_update();
        if request.last {
            stopped.cancelled().await;
        }
        let answer = emitter.lock().await.barrier(request.id).await;
        let ack = match answer {
            Ok(state) => Ack::Source {
                index,
                id: request.id,
                state,
            },
            Err(e) => Ack::Failed {
                id: request.id,
                reason: e.message,
            },
        };
        let _ = checkpointing.acks.send(ack);
        if request.last {
            return Ok(());
        }
    }
}

/// Advances a silent source's watermark with the clock, until the source ends.
async fn idle_clock(
    emitter: Arc<tokio::sync::Mutex<Emitter>>,
    idle: Duration,
    metrics: Arc<SourceMetrics>,
    ended: CancellationToken,
) -> Result<()> {
    let tick = (idle / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ended.cancelled() => return Ok(()),
            _ = tokio::time::sleep(tick) => {}
        }
        if emitter
            .lock()
            .await
            .idle_tick(idle, &metrics)
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}
