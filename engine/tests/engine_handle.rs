//! The handle of a running engine: two plans in one process stop and fail independently, the
//! status follows what the engine does, checkpoints can be asked for, and an abort ends every
//! task, the checkpoint coordinator included.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use eddy_engine::runtime::{CheckpointConfig, EngineStatus, RunningEngine};
use eddy_engine::{
    ConnectorError, ConnectorRegistry, Planner, Sink, SinkSpec, Source, SourceContext, SourceSpec,
    Table, TableSpec,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

mod common;

/// A source fed by the test until the test drops its sender or the engine stops.
struct Fed(mpsc::Receiver<RecordBatch>);

#[async_trait]
impl Source for Fed {
    fn describe(&self) -> String {
        "batches fed by the test".into()
    }

    async fn run(mut self: Box<Self>, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        let shutdown = ctx.shutdown().clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                b = self.0.recv() => match b {
                    Some(b) => ctx.send(b).await?,
                    None => return Ok(()),
                },
            }
        }
    }
}

/// A sink that counts the rows it gets.
struct Counted(Arc<Mutex<usize>>);

#[async_trait]
impl Sink for Counted {
    fn describe(&self) -> String {
        "rows counted by the test".into()
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        *self.0.lock().expect("not poisoned") += batch.num_rows();
        Ok(())
    }
}

/// A reference table whose first load fails.
struct Unreachable;

#[async_trait]
impl Table for Unreachable {
    fn describe(&self) -> String {
        "a table that cannot be loaded".into()
    }

    async fn load(&self) -> Result<RecordBatch, ConnectorError> {
        Err(ConnectorError::fatal("the database is unreachable"))
    }
}

/// A plan reading a fed source into a counting sink (stateless: every reading is a row out), and
/// what feeds and counts it.
struct Harness {
    feed: mpsc::Sender<RecordBatch>,
    rows: Arc<Mutex<usize>>,
    engine: RunningEngine,
}

const PASS_THROUGH: &str = "
CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'fed');
CREATE SINK out WITH (connector = 'counted');
INSERT INTO out SELECT device_id, temp FROM readings;
";

/// The same, but every reading is looked up in a table that cannot be loaded.
const WITH_TABLE: &str = "
CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'fed');
CREATE TABLE limits (device_id TEXT, max_temp DOUBLE) WITH (connector = 'unreachable');
CREATE SINK out WITH (connector = 'counted');
INSERT INTO out SELECT r.device_id, r.temp FROM readings r JOIN limits l ON r.device_id = l.device_id;
";

async fn start(
    sql: &str,
    shutdown: &CancellationToken,
    checkpoints: Option<CheckpointConfig>,
) -> Harness {
    let (feed, batches) = mpsc::channel(16);
    let batches = Arc::new(Mutex::new(Some(batches)));
    let rows = Arc::new(Mutex::new(0));
    let mut registry = ConnectorRegistry::new();
    registry.register_source("fed", move |_: &SourceSpec| {
        let batches = batches
            .lock()
            .expect("not poisoned")
            .take()
            .expect("one source");
        Ok(Box::new(Fed(batches)) as Box<dyn Source>)
    });
    let counted = Arc::clone(&rows);
    registry.register_sink("counted", move |_: &SinkSpec| {
        Ok(Box::new(Counted(Arc::clone(&counted))) as Box<dyn Sink>)
    });
    registry.register_table("unreachable", |_: &TableSpec| {
        Ok(Box::new(Unreachable) as Box<dyn Table>)
    });
    let plan = Planner::new("q.sql", &registry)
        .plan(sql)
        .await
        .unwrap_or_else(|d| panic!("{d}"));
    let engine = eddy_engine::start(plan, shutdown, checkpoints).expect("the engine starts");
    Harness { feed, rows, engine }
}

fn reading(ts: i64) -> RecordBatch {
    common::readings(vec!["m1".into()], vec![20.0], vec![ts])
}

/// Waits (up to 10 s) until `rows` reaches `n`.
async fn rows_reach(rows: &Arc<Mutex<usize>>, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while *rows.lock().expect("not poisoned") < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} rows of {n} arrived",
            rows.lock().expect("not poisoned")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (up to 10 s) until the status is one that `pred` accepts.
async fn status_becomes(
    status: &mut watch::Receiver<EngineStatus>,
    pred: impl Fn(&EngineStatus) -> bool,
) -> EngineStatus {
    tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| pred(s)))
        .await
        .expect("the status changed within 10 s")
        .expect("the engine reports its status")
        .clone()
}

#[tokio::test]
async fn two_engines_in_one_process_stop_independently() {
    let shutdown = CancellationToken::new();
    let a = start(PASS_THROUGH, &shutdown, None).await;
    let b = start(PASS_THROUGH, &shutdown, None).await;
    let mut a_status = a.engine.status();
    status_becomes(&mut a_status, |s| *s == EngineStatus::Running).await;

    a.feed.send(reading(1_000)).await.expect("fed");
    b.feed.send(reading(1_000)).await.expect("fed");
    rows_reach(&a.rows, 1).await;
    rows_reach(&b.rows, 1).await;

    a.engine.stop();
    status_becomes(&mut a_status, |s| *s == EngineStatus::Stopped).await;
    a.engine.wait().await.expect("a stops cleanly");

    // b goes on: it takes and writes more readings.
    let mut b_status = b.engine.status();
    assert_eq!(*b_status.borrow_and_update(), EngineStatus::Running);
    b.feed.send(reading(2_000)).await.expect("fed");
    rows_reach(&b.rows, 2).await;
    assert!(
        !shutdown.is_cancelled(),
        "stopping a left the caller's token alone"
    );

    // The caller's token still stops what is left.
    shutdown.cancel();
    status_becomes(&mut b_status, |s| *s == EngineStatus::Stopped).await;
    b.engine.wait().await.expect("b stops cleanly");
}

#[tokio::test]
async fn a_table_that_cannot_load_fails_its_engine_only() {
    let shutdown = CancellationToken::new();
    let failing = start(WITH_TABLE, &shutdown, None).await;
    let healthy = start(PASS_THROUGH, &shutdown, None).await;

    let mut status = failing.engine.status();
    let failed = status_becomes(&mut status, |s| matches!(s, EngineStatus::Failed(_))).await;
    assert!(
        matches!(&failed, EngineStatus::Failed(why) if why.contains("table limits") && why.contains("unreachable")),
        "{failed:?}"
    );
    let error = tokio::time::timeout(Duration::from_secs(10), failing.engine.wait())
        .await
        .expect("the failed engine ends")
        .expect_err("its error is reported");
    assert!(error.to_string().contains("table limits"), "{error}");

    assert!(
        !shutdown.is_cancelled(),
        "the failure did not stop the other plan"
    );
    healthy.feed.send(reading(1_000)).await.expect("fed");
    rows_reach(&healthy.rows, 1).await;
    assert_eq!(*healthy.engine.status().borrow(), EngineStatus::Running);
    healthy.engine.stop();
    healthy.engine.wait().await.expect("stops cleanly");
}

#[tokio::test]
async fn a_checkpoint_asked_for_completes_and_abort_ends_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shutdown = CancellationToken::new();
    let config = CheckpointConfig {
        dir: dir.path().join("state"),
        // Long enough that only the checkpoint asked for is taken.
        interval: Duration::from_secs(3600),
    };
    let h = start(PASS_THROUGH, &shutdown, Some(config)).await;
    h.feed.send(reading(1_000)).await.expect("fed");
    rows_reach(&h.rows, 1).await;

    let mut completed = h.engine.completed_checkpoints();
    assert_eq!(*completed.borrow_and_update(), 0);
    h.engine.request_checkpoint();
    tokio::time::timeout(Duration::from_secs(10), completed.changed())
        .await
        .expect("a checkpoint completed within 10 s")
        .expect("the coordinator runs");
    assert_eq!(*completed.borrow(), 1);
    assert!(dir.path().join("state/checkpoint-00000001").is_dir());

    // Abort: no draining and no last checkpoint, and nothing left running.
    let mut status = h.engine.status();
    h.engine.abort();
    status_becomes(&mut status, |s| *s == EngineStatus::Stopped).await;
    tokio::time::timeout(Duration::from_secs(5), h.engine.wait())
        .await
        .expect("an aborted engine ends at once")
        .expect("an abort is not an error");
    assert!(
        !dir.path().join("state/checkpoint-00000002").exists(),
        "an abort takes no last checkpoint"
    );
}

/// Alerts a watermark releases are timed, once per release, in their sink's latency histogram;
/// rows a query passes straight through are not (no watermark released them).
#[tokio::test]
async fn alerts_a_watermark_releases_are_timed_in_the_sinks_histogram() {
    const WINDOWED: &str = "
CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'fed');
CREATE SINK out WITH (connector = 'counted');
INSERT INTO out SELECT device_id, window_start, count(*) AS n
FROM TUMBLE(readings, ts, INTERVAL '10' SECOND) GROUP BY device_id, window_start, window_end;
";
    let timed = |h: &Harness| h.engine.metrics().sinks[0].alert_latency.cumulative().1;
    // The query times a release once it has handed the alerts on, maybe after the sink wrote
    // them.
    async fn settled(h: &Harness, n: u64) -> u64 {
        let timed = || h.engine.metrics().sinks[0].alert_latency.cumulative().1;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while timed() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        timed()
    }
    let shutdown = CancellationToken::new();
    let windowed = start(WINDOWED, &shutdown, None).await;
    for ts in [1_000, 4_000, 9_000] {
        windowed.feed.send(reading(ts)).await.expect("fed");
    }
    // Moves the watermark to 11 s: the first window closes.
    windowed.feed.send(reading(13_000)).await.expect("fed");
    rows_reach(&windowed.rows, 1).await;
    assert_eq!(settled(&windowed, 1).await, 1, "one window released once");
    // Moves the watermark to 21 s: the second window (one reading) closes.
    windowed.feed.send(reading(23_000)).await.expect("fed");
    rows_reach(&windowed.rows, 2).await;
    assert_eq!(settled(&windowed, 2).await, 2);

    let passing = start(PASS_THROUGH, &shutdown, None).await;
    for ts in [1_000, 13_000, 23_000] {
        passing.feed.send(reading(ts)).await.expect("fed");
    }
    rows_reach(&passing.rows, 3).await;
    assert_eq!(timed(&passing), 0, "no watermark released these rows");
    shutdown.cancel();
}
