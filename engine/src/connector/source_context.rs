//! [`SourceContext`]: what a running source hands its batches to. It judges lateness, advances the
//! watermark, fans batches out to every query that reads the source, and collects dead letters.

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, AsArray, StringBuilder, TimestampMillisecondArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::checkpoint::SourceCheckpoint;
use crate::error::ConnectorError;
use crate::fanout::{Fanout, Subscriber, Tagged};
use crate::message::{Message, SinkInput};
use crate::metrics::SourceMetrics;
use crate::time::{EventTime, Millis, WatermarkTracker, now_millis, show_duration};

/// The schema of dead-letter records: which source, where the record came from (a topic, a file
/// and line), why it was rejected, the record itself (lossy UTF-8) and when.
pub static DEAD_LETTER_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("origin", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, false),
        Field::new(
            "received_at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
});

/// How many dead letters are logged one by one before the log goes quiet.
const LOGGED_DEAD_LETTERS: u64 = 10;

/// Handed to [`crate::connector::Source::run`].
pub struct SourceContext {
    name: String,
    schema: SchemaRef,
    event_time: Option<EventTime>,
    emitter: Arc<tokio::sync::Mutex<Emitter>>,
    metrics: Arc<SourceMetrics>,
    dead_letter_tx: Option<mpsc::Sender<SinkInput>>,
    dead_letters: DeadLetterRows,
    /// Where late rows go, with the watermark they missed, if the source names a `late_sink`.
    late_tx: Option<mpsc::Sender<SinkInput>>,
    /// The position a restored source resumes from.
    resume_from: Option<serde_json::Value>,
    /// The ids of completed checkpoints, and where to ask for one, when checkpoints are taken.
    completed: Option<tokio::sync::watch::Receiver<u64>>,
    wanted: Option<Arc<tokio::sync::Notify>>,
    /// Rows stamped further ahead of the clock than this are dead letters.
    max_future: Option<Millis>,
    /// Where the source may keep files that must outlive the process, with checkpoints.
    durable_dir: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
}

/// What a source's context and its idle clock share: the watermark and the readers. Both send
/// under its lock, so a watermark the idle clock sends is never overtaken by older rows.
pub(crate) struct Emitter {
    name: String,
    tracker: Option<WatermarkTracker>,
    sent_watermark: Option<Millis>,
    outputs: Fanout,
    /// When the last rows arrived, and the largest event time then.
    last_arrival: Option<(tokio::time::Instant, Millis)>,
    /// Where the source is in its input, as of the rows sent: what a checkpoint records.
    position: Option<serde_json::Value>,
    /// The id of the last checkpoint barrier sent.
    last_barrier: u64,
    /// The sinks this source writes to besides the queries (late rows, dead letters): barriers
    /// go there too.
    side_outputs: Vec<mpsc::Sender<SinkInput>>,
    /// Where the arrival of the rows behind each watermark sent is noted.
    arrivals: Option<Arc<crate::metrics::WatermarkArrivals>>,
}

impl Emitter {
    async fn broadcast(&mut self, message: Message) -> Result<(), ConnectorError> {
        if !self.outputs.send(message).await {
            return Err(ConnectorError::fatal("no query reads it any more"));
        }
        Ok(())
    }

    /// Sends the tracker's watermark if it moved forward, moved by rows that arrived at
    /// `arrival` (now, when none did: the clock moved it).
    async fn advance(
        &mut self,
        metrics: &SourceMetrics,
        arrival: Option<std::time::Instant>,
    ) -> Result<(), ConnectorError> {
        if let Some(w) = self.tracker.as_ref().and_then(WatermarkTracker::watermark)
            && self.sent_watermark.is_none_or(|s| w > s)
        {
            self.sent_watermark = Some(w);
            metrics.set_watermark(w);
            if let Some(arrivals) = &self.arrivals {
                arrivals.sent(w, arrival.unwrap_or_else(std::time::Instant::now));
            }
            self.broadcast(Message::Watermark(w)).await?;
        }
        Ok(())
    }

    /// Sends checkpoint barrier `id` to every reader and side output; what the checkpoint
    /// records of the source.
    pub(crate) async fn barrier(&mut self, id: u64) -> Result<SourceCheckpoint, ConnectorError> {
        self.broadcast(Message::Barrier(id)).await?;
        for tx in &self.side_outputs {
            // A side sink that has stopped fails the checkpoint by not answering.
            let _ = tx.send(SinkInput::Barrier(id)).await;
        }
        self.last_barrier = id;
        Ok(SourceCheckpoint {
            name: self.name.clone(),
            position: self.position.clone(),
            max_seen: self.tracker.as_ref().and_then(WatermarkTracker::max_seen),
            watermark: self.sent_watermark,
        })
    }

    /// The id of the last checkpoint barrier sent.
    pub(crate) fn last_barrier(&self) -> u64 {
        self.last_barrier
    }

    /// The source has been silent for `idle_timeout` or more: event time is taken to go on with
    /// the clock since the last rows arrived, and the watermark follows.
    pub(crate) async fn idle_tick(
        &mut self,
        idle_timeout: std::time::Duration,
        metrics: &SourceMetrics,
    ) -> Result<(), ConnectorError> {
        let (Some((at, max)), Some(tracker)) = (self.last_arrival, self.tracker.as_mut()) else {
            return Ok(());
        };
        let silent = at.elapsed();
        if silent < idle_timeout {
            return Ok(());
        }
        tracker.advance_to(max.saturating_add(silent.as_millis() as Millis));
        self.advance(metrics, None).await
    }
}

#[derive(Default)]
struct DeadLetterRows {
    origin: StringBuilder,
    reason: StringBuilder,
    payload: StringBuilder,
    at: Vec<Millis>,
}

impl SourceContext {
    pub(crate) fn new(
        name: &str,
        schema: SchemaRef,
        event_time: Option<EventTime>,
        outputs: Fanout,
        metrics: Arc<SourceMetrics>,
        dead_letter_tx: Option<mpsc::Sender<SinkInput>>,
        shutdown: CancellationToken,
    ) -> Self {
        let emitter = Emitter {
            name: name.to_string(),
            tracker: event_time.as_ref().map(|e| WatermarkTracker::new(e.bound)),
            sent_watermark: None,
            outputs,
            last_arrival: None,
            position: None,
            last_barrier: 0,
            side_outputs: dead_letter_tx.iter().cloned().collect(),
            arrivals: None,
        };
        Self {
            name: name.to_string(),
            schema,
            event_time,
            emitter: Arc::new(tokio::sync::Mutex::new(emitter)),
            metrics,
            dead_letter_tx,
            dead_letters: DeadLetterRows::default(),
            late_tx: None,
            resume_from: None,
            completed: None,
            wanted: None,
            max_future: None,
            durable_dir: None,
            shutdown,
        }
    }

    /// Resumes from a checkpoint: the watermark where it was, and the connector's position.
    pub(crate) fn restored(mut self, state: &SourceCheckpoint) -> Self {
        self.resume_from = state.position.clone();
        if let Ok(mut emitter) = self.emitter.try_lock() {
            if let (Some(max), Some(tracker)) = (state.max_seen, emitter.tracker.as_mut()) {
                tracker.advance_to(max);
            }
            emitter.sent_watermark = state.watermark;
            emitter.position = state.position.clone();
            if let Some(w) = state.watermark {
                self.metrics.set_watermark(w);
            }
        }
        self
    }

    pub(crate) fn with_checkpoints(
        mut self,
        completed: tokio::sync::watch::Receiver<u64>,
        wanted: Arc<tokio::sync::Notify>,
    ) -> Self {
        self.completed = Some(completed);
        self.wanted = Some(wanted);
        self
    }

    /// The source may keep files that must outlive the process in `dir` (the engine gives each
    /// source a directory under the state directory when it takes checkpoints).
    pub fn with_durable_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.durable_dir = Some(dir);
        self
    }

    /// A directory of this source's own under the state directory, when the engine takes
    /// checkpoints: what the source keeps there survives a crash with the checkpoints (an MQTT
    /// source's ingest log). `None` without checkpoints.
    pub fn durable_dir(&self) -> Option<&std::path::Path> {
        self.durable_dir.as_deref()
    }

    /// Asks for a checkpoint now rather than at the end of the interval (one is taken at a
    /// time; asking again meanwhile asks for the next). Nothing happens without checkpoints.
    pub fn request_checkpoint(&self) {
        if let Some(w) = &self.wanted {
            w.notify_one();
        }
    }

    /// The id of the newest completed checkpoint, as it changes; `None` when the engine takes no
    /// checkpoints. A source that acknowledges its input (MQTT) does so once a checkpoint covers
    /// it: see [`Self::last_barrier`].
    pub fn completed_checkpoints(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.completed.clone()
    }

    /// Where a source restored from a checkpoint resumes (what it passed to
    /// [`Self::send_from`]); `None` when it starts afresh.
    pub fn resume_from(&self) -> Option<&serde_json::Value> {
        self.resume_from.as_ref()
    }

    /// Rows whose event time is more than `limit` ahead of the clock become dead letters: one
    /// device with a wrong clock would otherwise push the watermark years ahead, and every later
    /// reading would be late.
    pub(crate) fn with_max_future(mut self, limit: Option<std::time::Duration>) -> Self {
        self.max_future = limit.map(|d| d.as_millis() as Millis);
        self
    }

    /// Notes in `arrivals` when the rows behind each watermark sent arrived.
    pub(crate) fn with_arrivals(self, arrivals: Arc<crate::metrics::WatermarkArrivals>) -> Self {
        if let Ok(mut emitter) = self.emitter.try_lock() {
            emitter.arrivals = Some(arrivals);
        }
        self
    }

    /// Late rows go to `tx` instead of only being counted.
    pub(crate) fn with_late_rows(mut self, tx: Option<mpsc::Sender<SinkInput>>) -> Self {
        if let (Some(tx), Ok(mut emitter)) = (&tx, self.emitter.try_lock()) {
            emitter.side_outputs.push(tx.clone());
        }
        self.late_tx = tx;
        self
    }

    /// A context whose messages go to `outputs` (as input 0), for tests and benchmarks of a
    /// single source.
    pub fn for_test(
        name: &str,
        schema: SchemaRef,
        event_time: Option<EventTime>,
        outputs: Vec<mpsc::Sender<Tagged>>,
        dead_letter_tx: Option<mpsc::Sender<SinkInput>>,
    ) -> Self {
        Self::new(
            name,
            schema,
            event_time,
            Fanout::new(
                outputs
                    .into_iter()
                    .map(|tx| Subscriber { tx, input: 0 })
                    .collect(),
            ),
            Arc::new(SourceMetrics::new(name)),
            dead_letter_tx,
            CancellationToken::new(),
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The declared schema: batches given to [`Self::send`] must have it.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn metrics(&self) -> &SourceMetrics {
        &self.metrics
    }

    /// Cancelled when the engine stops (Ctrl-C): the source should return promptly.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Hands decoded rows to the queries. Late rows are dropped and counted; the watermark advances
    /// after the batch. Fails only when no query reads the source any more.
    pub async fn send(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        self.send_from(batch, None).await
    }

    /// [`Self::send`], and the source is now at `position` in its input (a file's offset): a
    /// checkpoint taken after these rows records it, and a restored source resumes from it.
    pub async fn send_from(
        &mut self,
        batch: RecordBatch,
        position: Option<serde_json::Value>,
    ) -> Result<(), ConnectorError> {
        self.send_inner(batch, position, None).await
    }

    /// [`Self::send_from`] for rows of one split of the source (a Kafka partition): the watermark
    /// follows the split furthest behind, so splits read one after the other are not late (see
    /// [`WatermarkTracker::observe_split`]).
    pub async fn send_split(
        &mut self,
        batch: RecordBatch,
        split: u32,
        position: Option<serde_json::Value>,
    ) -> Result<(), ConnectorError> {
        self.send_inner(batch, position, Some(split)).await
    }

    /// The source reads `split` from now on: until it has rows or is retired, it holds the
    /// watermark where it is.
    pub async fn add_split(&self, split: u32) {
        if let Some(tracker) = &mut self.emitter.lock().await.tracker {
            tracker.add_split(split);
        }
    }

    /// The source no longer reads `split`, or has read all it holds for now: it holds the
    /// watermark back no more, and the watermark moves if the other splits allow it.
    pub async fn retire_split(&self, split: u32) -> Result<(), ConnectorError> {
        let mut emitter = self.emitter.lock().await;
        if let Some(tracker) = &mut emitter.tracker {
            tracker.retire_split(split);
        }
        emitter.advance(&self.metrics, None).await
    }

    async fn send_inner(
        &mut self,
        batch: RecordBatch,
        position: Option<serde_json::Value>,
        split: Option<u32>,
    ) -> Result<(), ConnectorError> {
        let arrived = std::time::Instant::now();
        let rows = batch.num_rows();
        self.metrics
            .events
            .fetch_add(rows as u64, Ordering::Relaxed);
        let mut batch = batch;
        if let (Some(limit), Some(et)) = (self.max_future, &self.event_time)
            && rows > 0
        {
            batch = self.drop_future_rows(batch, et.index, limit)?;
        }
        // Dead letters of these rows go out before the rows: a barrier after the rows is after
        // them too.
        self.flush().await?;
        let mut emitter = self.emitter.lock().await;
        if let Some(p) = position {
            emitter.position = Some(p);
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if let (Some(et), Some(tracker)) = (&self.event_time, &mut emitter.tracker) {
            let times = batch
                .column(et.index)
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or_else(|| {
                    ConnectorError::fatal(format!(
                        "source {}: event-time column '{}' is not a millisecond timestamp",
                        self.name, et.column
                    ))
                })?;
            let observed = match split {
                Some(split) => tracker.observe_split(split, times.values()),
                None => tracker.observe(times.values()),
            };
            if let Some(keep) = observed.keep {
                self.metrics
                    .late
                    .fetch_add(observed.late as u64, Ordering::Relaxed);
                if let Some(tx) = &self.late_tx {
                    let late = late_rows(&batch, &keep, &observed.late_watermarks, et)
                        .map_err(|e| ConnectorError::fatal(e.to_string()))?;
                    if tx.send(SinkInput::Rows(late)).await.is_err() {
                        warn!(source = %self.name, "the late-row sink has stopped");
                    }
                }
                batch = filter_record_batch(&batch, &keep)
                    .map_err(|e| ConnectorError::fatal(e.to_string()))?;
            }
            if let Some(max) = tracker.max_seen() {
                emitter.last_arrival = Some((tokio::time::Instant::now(), max));
            }
        }
        if batch.num_rows() > 0 {
            emitter.broadcast(Message::Batch(batch)).await?;
        }
        emitter.advance(&self.metrics, Some(arrived)).await
    }

    /// The id of the last checkpoint barrier this source has sent: rows sent before it are in
    /// that checkpoint once it completes, rows sent after it in a later one.
    pub async fn last_barrier(&self) -> u64 {
        self.emitter.lock().await.last_barrier()
    }

    /// Moves rows stamped more than `limit` ahead of the clock to the dead letters.
    fn drop_future_rows(
        &mut self,
        batch: RecordBatch,
        time: usize,
        limit: Millis,
    ) -> Result<RecordBatch, ConnectorError> {
        let Some(times) = batch
            .column(time)
            .as_primitive_opt::<TimestampMillisecondType>()
        else {
            return Ok(batch);
        };
        let latest = now_millis().saturating_add(limit);
        if times.values().iter().all(|&t| t <= latest) {
            return Ok(batch);
        }
        let text = rows_as_text(&batch).map_err(|e| ConnectorError::fatal(e.to_string()))?;
        let schema = batch.schema();
        let column = schema.field(time).name().clone();
        let mut keep = Vec::with_capacity(batch.num_rows());
        for (row, &t) in times.values().iter().enumerate() {
            if t <= latest {
                keep.push(true);
                continue;
            }
            keep.push(false);
            let ahead = show_duration(t.saturating_sub(now_millis()));
            self.dead_letter(
                &format!("{} (decoded row)", self.name),
                text[row].as_bytes(),
                &format!(
                    "{column} is {ahead} ahead of the clock, more than max_future ({}) allows",
                    show_duration(limit)
                ),
            );
        }
        let keep = datafusion::arrow::array::BooleanArray::from(keep);
        filter_record_batch(&batch, &keep).map_err(|e| ConnectorError::fatal(e.to_string()))
    }

    /// The shared state the idle clock advances.
    pub(crate) fn emitter(&self) -> Arc<tokio::sync::Mutex<Emitter>> {
        Arc::clone(&self.emitter)
    }

    /// Every query reading the source has stopped (found when a batch could not be sent).
    pub(crate) async fn unread(&self) -> bool {
        self.emitter.lock().await.outputs.is_empty()
    }

    /// Records a record that could not be decoded: counted, logged (the first few), and written to
    /// the source's dead-letter sink if it has one (on the next [`Self::send`] or [`Self::flush`]).
    pub fn dead_letter(&mut self, origin: &str, payload: &[u8], reason: &str) {
        let n = self.metrics.dead_letters.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= LOGGED_DEAD_LETTERS {
            warn!(source = %self.name, origin, "bad record: {reason}");
            if n == LOGGED_DEAD_LETTERS {
                warn!(source = %self.name, "further bad records are only counted (and dead-lettered if set)");
            }
        }
        if self.dead_letter_tx.is_some() {
            let d = &mut self.dead_letters;
            d.origin.append_value(origin);
            d.reason.append_value(reason);
            d.payload.append_value(String::from_utf8_lossy(payload));
            d.at.push(now_millis());
        }
    }

    /// Sends buffered dead letters on, and the source is now at `position` (see
    /// [`Self::send_from`]): for input that held only bad records.
    pub async fn flush_from(&mut self, position: serde_json::Value) -> Result<(), ConnectorError> {
        self.send_from(
            RecordBatch::new_empty(Arc::clone(&self.schema)),
            Some(position),
        )
        .await
    }

    /// Sends buffered dead letters on. Sources call it when they are idle.
    pub async fn flush(&mut self) -> Result<(), ConnectorError> {
        let Some(tx) = &self.dead_letter_tx else {
            return Ok(());
        };
        if self.dead_letters.at.is_empty() {
            return Ok(());
        }
        let d = std::mem::take(&mut self.dead_letters);
        let n = d.at.len();
        let mut source = StringBuilder::new();
        for _ in 0..n {
            source.append_value(&self.name);
        }
        let mut origin = d.origin;
        let mut reason = d.reason;
        let mut payload = d.payload;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(source.finish()),
            Arc::new(origin.finish()),
            Arc::new(reason.finish()),
            Arc::new(payload.finish()),
            Arc::new(TimestampMillisecondArray::from(d.at)),
        ];
        let batch = RecordBatch::try_new(Arc::clone(&DEAD_LETTER_SCHEMA), columns)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        if tx.send(SinkInput::Rows(batch)).await.is_err() {
            warn!(source = %self.name, "the dead-letter sink has stopped; {n} records not written");
        }
        Ok(())
    }

    /// The input has ended: flushes dead letters and tells every query, so open windows fire.
    pub(crate) async fn finish(&mut self) {
        let _ = self.flush().await;
        let _ = self.emitter.lock().await.broadcast(Message::End).await;
    }
}

/// The columns of late rows as a `late_sink` receives them: the source's, then the watermark the
/// row missed and why it was late.
pub fn late_row_schema(source: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = source.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(
        "late_watermark",
        DataType::Timestamp(TimeUnit::Millisecond, None),
        false,
    ));
    fields.push(Field::new("late_reason", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

fn late_rows(
    batch: &RecordBatch,
    keep: &datafusion::arrow::array::BooleanArray,
    watermarks: &[Millis],
    et: &EventTime,
) -> datafusion::arrow::error::Result<RecordBatch> {
    let late_mask = datafusion::arrow::compute::not(keep)?;
    let late = filter_record_batch(batch, &late_mask)?;
    let times = late
        .column(et.index)
        .as_primitive::<TimestampMillisecondType>()
        .values()
        .to_vec();
    let mut reason = StringBuilder::new();
    for (t, w) in times.iter().zip(watermarks) {
        reason.append_value(format!(
            "{} is {} behind the watermark (the newest {} seen minus the {} bound)",
            et.column,
            show_duration(w - t),
            et.column,
            show_duration(et.bound)
        ));
    }
    let mut columns = late.columns().to_vec();
    columns.push(Arc::new(TimestampMillisecondArray::from(
        watermarks.to_vec(),
    )));
    columns.push(Arc::new(reason.finish()));
    RecordBatch::try_new(late_row_schema(&batch.schema()), columns)
}

/// Each row as `column=value, column=value`: how decoded rows read in a dead letter.
pub(crate) fn rows_as_text(
    batch: &RecordBatch,
) -> Result<Vec<String>, datafusion::arrow::error::ArrowError> {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    let schema = batch.schema();
    Ok((0..batch.num_rows())
        .map(|row| {
            schema
                .fields()
                .iter()
                .zip(&formatters)
                .map(|(f, fmt)| format!("{}={}", f.name(), fmt.value(row)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Float64Array;

    fn batch(times: &[Millis]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("v", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMillisecondArray::from(times.to_vec())),
                Arc::new(Float64Array::from(vec![1.0; times.len()])),
            ],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn late_rows_are_dropped_counted_and_the_watermark_follows() {
        let (tx, mut rx) = mpsc::channel(16);
        let b = batch(&[10_000, 7_000, 9_000]);
        let et = EventTime {
            column: "ts".into(),
            index: 0,
            bound: 2_000,
        };
        let mut ctx = SourceContext::for_test("s", b.schema(), Some(et), vec![tx], None);
        ctx.send(b).await.unwrap();
        let Some((0, Message::Batch(out))) = rx.recv().await else {
            panic!()
        };
        assert_eq!(out.num_rows(), 2);
        assert!(matches!(
            rx.recv().await,
            Some((0, Message::Watermark(8_000)))
        ));
        assert_eq!(ctx.metrics().late.load(Ordering::Relaxed), 1);
        assert_eq!(ctx.metrics().events.load(Ordering::Relaxed), 3);
        // An older batch does not move the watermark back, and sends no watermark.
        ctx.send(batch(&[8_500])).await.unwrap();
        assert!(matches!(rx.recv().await, Some((0, Message::Batch(_)))));
        ctx.finish().await;
        assert!(matches!(rx.recv().await, Some((0, Message::End))));
    }

    #[tokio::test]
    async fn dead_letters_reach_the_dead_letter_sink_with_their_reason() {
        let (tx, _rx) = mpsc::channel(16);
        let (dtx, mut drx) = mpsc::channel(16);
        let b = batch(&[1]);
        let mut ctx = SourceContext::for_test("s", b.schema(), None, vec![tx], Some(dtx));
        ctx.dead_letter("file.jsonl:3", b"{oops", "not JSON");
        ctx.flush().await.unwrap();
        let Some(SinkInput::Rows(d)) = drx.recv().await else {
            panic!("no dead letters")
        };
        assert_eq!(d.num_rows(), 1);
        assert_eq!(d.column(2).as_string::<i32>().value(0), "not JSON");
        assert_eq!(d.column(3).as_string::<i32>().value(0), "{oops");
        assert_eq!(ctx.metrics().dead_letters.load(Ordering::Relaxed), 1);
    }
}
