//! What flows between a query's tasks: data and control in one ordered stream.

use datafusion::arrow::record_batch::RecordBatch;

use crate::time::Millis;

#[derive(Debug, Clone)]
pub enum Message {
    /// Rows; inside a pipeline the last column is the rows' event time.
    Batch(RecordBatch),
    /// No row older than this will follow.
    Watermark(Millis),
    /// The input has ended: every open window fires, then the pipeline stops.
    End,
    /// Checkpoint `n`: what came before it on this stream belongs to the checkpoint.
    Barrier(u64),
}

/// What a sink receives: rows to write, and the barriers of checkpoints (a sink flushes when it
/// has a barrier from every writer).
#[derive(Debug, Clone)]
pub enum SinkInput {
    Rows(RecordBatch),
    Barrier(u64),
}
