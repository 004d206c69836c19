//! A sink's task: writes with retries, dead letters for what cannot be written, flushes, and its
//! share of checkpoints (a flush once every writer's barrier is in).

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use tracing::error;

use super::barriers::Ack;
use crate::connector::{ConnectorError, Sink};
use crate::connector::{DEAD_LETTER_SCHEMA, rows_as_text};
use crate::error::{EngineError, Result};
use crate::message::SinkInput;
use crate::metrics::SinkMetrics;
use crate::time::now_millis;

/// Writes `batch`, trying again after retryable failures with exponential backoff and jitter.
async fn write_with_retries(
    name: &str,
    sink: &mut dyn Sink,
    batch: &RecordBatch,
    retry: crate::plan::Retry,
) -> std::result::Result<(), ConnectorError> {
    let mut delay = retry.first;
    let mut attempt = 0;
    loop {
        match sink.write(batch.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) if e.retryable && attempt < retry.attempts => {
                attempt += 1;
                // Up to a quarter more, so that many sinks failing together do not retry together.
                let jitter = delay.mul_f64(0.25 * (now_millis() % 1000) as f64 / 1000.0);
                tracing::warn!(
                    sink = %name,
                    "write failed: {e}; retry {attempt} of {} in {:?}",
                    retry.attempts,
                    delay + jitter
                );
                tokio::time::sleep(delay + jitter).await;
                delay = (delay * 2).min(retry.max);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Rows a sink could not write, as dead letters: one per row, the row as text, and why.
fn sink_dead_letters(name: &str, batch: &RecordBatch, reason: &str) -> Result<RecordBatch> {
    use datafusion::arrow::array::{StringArray, TimestampMillisecondArray};
    let payload = rows_as_text(batch)?;
    let n = batch.num_rows();
    let columns: Vec<datafusion::arrow::array::ArrayRef> = vec![
        Arc::new(StringArray::from(vec![name; n])),
        Arc::new(StringArray::from(vec![format!("sink {name}"); n])),
        Arc::new(StringArray::from(vec![reason; n])),
        Arc::new(StringArray::from(payload)),
        Arc::new(TimestampMillisecondArray::from(vec![now_millis(); n])),
    ];
    Ok(RecordBatch::try_new(
        Arc::clone(&DEAD_LETTER_SCHEMA),
        columns,
    )?)
}

/// What a sink does with a write that fails: retry, then dead-letter.
#[derive(Default)]
pub(super) struct FailedRows {
    pub(super) retry: crate::plan::Retry,
    pub(super) dead_letter: Option<Box<dyn Sink>>,
}

pub(super) async fn run_sink(
    name: String,
    mut sink: Box<dyn Sink>,
    mut input: mpsc::Receiver<SinkInput>,
    metrics: Arc<SinkMetrics>,
    mut failed: FailedRows,
    barriers: Option<(usize, mpsc::UnboundedSender<Ack>)>,
    written: tokio::sync::broadcast::Sender<super::Written>,
) -> Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    // Barriers received per checkpoint, until every writer's is in.
    let mut arrived: std::collections::BTreeMap<u64, usize> = Default::default();
    while let Some(item) = input.recv().await {
        let batch = match item {
            SinkInput::Rows(b) => b,
            SinkInput::Barrier(id) => {
                let Some((writers, acks)) = &barriers else {
                    continue;
                };
                let n = arrived.entry(id).or_default();
                *n += 1;
                if *n < *writers {
                    continue;
                }
                arrived.remove(&id);
                // Older checkpoints whose barriers never all came are abandoned.
                arrived.retain(|&other, _| other > id);
                let ack = match sink.flush().await {
                    Ok(()) => Ack::Sink { id },
                    Err(e) => Ack::Failed {
                        id,
                        reason: format!("sink {name}: flush failed: {e}"),
                    },
                };
                let _ = acks.send(ack);
                continue;
            }
        };
        let rows = batch.num_rows() as u64;
        // While a write is retried the channel fills up, and the queries and sources wait.
        match write_with_retries(&name, sink.as_mut(), &batch, failed.retry).await {
            Ok(()) => {
                metrics.rows.fetch_add(rows, Relaxed);
                if written.receiver_count() > 0 {
                    let _ = written.send(super::Written {
                        sink: name.clone(),
                        batch,
                    });
                }
            }
            Err(e) => {
                metrics.errors.fetch_add(1, Relaxed);
                // A write that failed for some rows only: those are the dead letters.
                let (batch, rows) = match &e.rows {
                    Some(failed_rows) => {
                        let indices = datafusion::arrow::array::UInt32Array::from_iter_values(
                            failed_rows.iter().map(|&r| r as u32),
                        );
                        let failed_batch =
                            datafusion::arrow::compute::take_record_batch(&batch, &indices)?;
                        metrics
                            .rows
                            .fetch_add(rows - failed_batch.num_rows() as u64, Relaxed);
                        let n = failed_batch.num_rows() as u64;
                        (failed_batch, n)
                    }
                    None => (batch, rows),
                };
                match &mut failed.dead_letter {
                    Some(dl) => {
                        let letters = sink_dead_letters(&name, &batch, &e.message)?;
                        if let Err(e2) = dl.write(letters).await.and(dl.flush().await) {
                            error!(sink = %name, "{rows} rows lost: {e}; and the dead-letter file failed too: {e2}");
                        } else {
                            error!(sink = %name, "{rows} rows to the dead letters: {e}");
                        }
                    }
                    None => error!(sink = %name, "{rows} rows not written: {e}"),
                }
            }
        }
        if input.is_empty()
            && let Err(e) = sink.flush().await
        {
            metrics.errors.fetch_add(1, Relaxed);
            error!(sink = %name, "flush failed: {e}");
        }
    }
    sink.flush().await.map_err(|e| {
        EngineError::Connector(ConnectorError {
            message: format!("sink {name}: {}", e.message),
            retryable: e.retryable,
            rows: None,
        })
    })
}
