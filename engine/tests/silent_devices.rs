//! "A device sent nothing for 5 minutes": a SESSION with a 5-minute gap closes 5 minutes (plus the
//! watermark bound) after the device's last reading. While other devices report, their readings
//! move the watermark; when the whole source goes quiet, `idle_timeout` lets the watermark follow
//! the clock. Run on tokio's paused clock, so minutes pass in no time and the timing is exact.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{
    AsArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::TimestampMillisecondType;
use eddy_engine::{
    ConnectorError, ConnectorRegistry, Planner, Sink, SinkSpec, Source, SourceContext, SourceSpec,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A source fed by the test: each batch it receives is handed to the engine as it comes.
struct FedSource {
    batches: mpsc::Receiver<RecordBatch>,
}

#[async_trait]
impl Source for FedSource {
    fn describe(&self) -> String {
        "batches fed by the test".into()
    }

    async fn run(mut self: Box<Self>, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        while let Some(b) = self.batches.recv().await {
            ctx.send(b).await?;
        }
        Ok(())
    }
}

/// A sink that keeps every row it gets, with the (paused) clock's time it got it.
struct Collected(Arc<Mutex<Vec<(Instant, String, i64)>>>);

#[async_trait]
impl Sink for Collected {
    fn describe(&self) -> String {
        "rows kept by the test".into()
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        let ids = batch.column(0).as_string::<i32>();
        let silent_at = batch.column(2).as_primitive::<TimestampMillisecondType>();
        let mut rows = self.0.lock().expect("not poisoned");
        for i in 0..batch.num_rows() {
            rows.push((Instant::now(), ids.value(i).to_string(), silent_at.value(i)));
        }
        Ok(())
    }
}

const T0: i64 = 1_767_225_600_000;

fn reading(device: &str, ts: i64) -> RecordBatch {
    RecordBatch::try_new(
        eddy_schema(),
        vec![
            Arc::new(StringArray::from(vec![device])),
            Arc::new(Float64Array::from(vec![20.0])),
            Arc::new(TimestampMillisecondArray::from(vec![ts])),
        ],
    )
    .expect("a reading")
}

fn eddy_schema() -> datafusion::arrow::datatypes::SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("temp", DataType::Float64, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

const QUERY: &str = "
CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'fed', idle_timeout = '30s');
CREATE SINK alerts WITH (connector = 'collected');

-- One row per device that went quiet: its last reading, and when it had been silent 5 minutes.
INSERT INTO alerts
SELECT device_id, window_end - INTERVAL '5' MINUTE AS last_seen, window_end AS silent_at
FROM SESSION(readings, ts, INTERVAL '5' MINUTE)
GROUP BY device_id, window_start, window_end;
";

#[tokio::test(start_paused = true)]
async fn a_quiet_device_is_reported_five_minutes_after_its_last_reading() {
    let (feed, batches) = mpsc::channel(16);
    let batches = Arc::new(Mutex::new(Some(batches)));
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let mut registry = ConnectorRegistry::new();
    let source_batches = Arc::clone(&batches);
    registry.register_source("fed", move |_: &SourceSpec| {
        let batches = source_batches
            .lock()
            .expect("not poisoned")
            .take()
            .expect("one source");
        Ok(Box::new(FedSource { batches }) as Box<dyn Source>)
    });
    let sink_alerts = Arc::clone(&alerts);
    registry.register_sink("collected", move |_: &SinkSpec| {
        Ok(Box::new(Collected(Arc::clone(&sink_alerts))) as Box<dyn Sink>)
    });
    let plan = Planner::new("silent.sql", &registry)
        .plan(QUERY)
        .await
        .unwrap_or_else(|d| panic!("{d}"));
    let shutdown = CancellationToken::new();
    let engine = eddy_engine::start(plan, &shutdown, None).expect("the engine starts");

    // Both devices report every 10 s (event time follows the clock); device a stops after 60 s,
    // device b after 8 minutes.
    let start = Instant::now();
    let mut a_last = None;
    let mut b_last = None;
    for step in 0..=48i64 {
        let ts = T0 + step * 10_000;
        if step <= 6 {
            feed.send(reading("a", ts)).await.expect("fed");
            a_last = Some((Instant::now(), ts));
        }
        feed.send(reading("b", ts)).await.expect("fed");
        b_last = Some((Instant::now(), ts));
        tokio::time::sleep_until(start + Duration::from_secs(10 * (step as u64 + 1))).await;
    }
    let (a_sent, a_ts) = a_last.expect("a reported");
    let (b_sent, b_ts) = b_last.expect("b reported");

    // Device b went quiet at 8 minutes; the source is silent from then on, and only the idle clock
    // can move the watermark: b's alert comes 5 minutes and 2 s (the bound) after its reading.
    tokio::time::sleep_until(b_sent + Duration::from_secs(300)).await;
    assert!(
        alerts
            .lock()
            .expect("not poisoned")
            .iter()
            .all(|(_, d, _)| d != "b"),
        "device b reported silent before 5 minutes had passed"
    );
    tokio::time::sleep_until(b_sent + Duration::from_secs(310)).await;

    let alerts = alerts.lock().expect("not poisoned").clone();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let (a_at, _, a_silent) = alerts.iter().find(|(_, d, _)| d == "a").expect("a alert");
    let (b_at, _, b_silent) = alerts.iter().find(|(_, d, _)| d == "b").expect("b alert");
    assert_eq!(*a_silent, a_ts + 300_000);
    assert_eq!(*b_silent, b_ts + 300_000);
    // a: b's readings carry the watermark past a's session end (+2 s bound), at the next report.
    let a_delay = a_at.duration_since(a_sent);
    assert!(
        a_delay >= Duration::from_secs(302) && a_delay <= Duration::from_secs(312),
        "device a reported {a_delay:?} after its last reading"
    );
    // b: the idle clock, which ticks every second once the source is 30 s quiet.
    let b_delay = b_at.duration_since(b_sent);
    assert!(
        b_delay >= Duration::from_secs(302) && b_delay <= Duration::from_secs(304),
        "device b reported {b_delay:?} after its last reading"
    );

    drop(feed);
    shutdown.cancel();
    engine.wait().await.expect("the engine stops cleanly");
}
