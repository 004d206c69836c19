//! The Kafka connector against a real Kafka-protocol broker: tansu (a single-binary broker written
//! in Rust, with SQLite storage that keeps topics, consumer groups and committed offsets), started
//! by each test on a free port. `.ci/run` installs tansu once into `~/.cache/eddy-tools`; set
//! `EDDY_TANSU` to use another build. These tests are `#[ignore]`d in the README's test command,
//! which needs only the machine's services, and run by `.ci/run` (`cargo test -- --ignored`).
//!
//! Readings keyed by device over 3 partitions become windows whose alerts go to another topic,
//! keyed by device, checked against counts computed here, a bad message dead-lettered; Eddy killed
//! with SIGKILL mid-stream and started again resumes from the offsets its checkpoint recorded, so
//! every window comes out exactly as an uninterrupted run; the broker stopped and started again
//! while readings and alerts flow loses nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::windows::{self, QUERY_WINDOWS, expected_windows, read_alerts, windows_of};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use serde_json::Value;

/// One Kafka test at a time: each starts a broker and Eddy processes of its own, and on two cores
/// they would compete.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn tansu_binary() -> PathBuf {
    if let Ok(p) = std::env::var("EDDY_TANSU") {
        return PathBuf::from(p);
    }
    let cached = std::env::var("HOME")
        .map(|h| PathBuf::from(h).join(".cache/eddy-tools/bin/tansu"))
        .unwrap_or_default();
    if cached.exists() {
        return cached;
    }
    PathBuf::from("tansu")
}

/// A tansu broker on a free port, its SQLite store in a directory of the test's.
struct Broker {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl Broker {
    fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(dir.join("tansu.db"), port)
    }

    fn start_on(store: PathBuf, port: u16) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let log_path = store.with_file_name("tansu.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("tansu's log");
        let child = Command::new(tansu_binary())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            // tansu reads the SQLite path relative to its working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(store.parent().expect("the store's directory"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the Kafka test broker tansu is needed ({e}): .ci/run installs it, or \
                     cargo install tansu --version 0.6.0 --locked --features dynostore,postgres,libsql \
                     --root ~/.cache/eddy-tools"
                )
            });
        let mut child = child;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // The port answering is not enough: another process may have taken it.
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "tansu ended ({status}): {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, store }
    }

    fn servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGTERM, then the same broker started again on the same port and store.
    fn restart(mut self) -> Self {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let (store, port) = (self.store.clone(), self.port);
        drop(self);
        Self::start_on(store, port)
    }

    async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.servers())
            .create()
            .expect("admin client");
        let results = admin
            .create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .expect("topics created");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("topic {t}: {e}"));
        }
    }

    fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", self.servers())
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .expect("producer")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `(key, payload)` pairs to `topic` and waits for them to be stored.
async fn produce(producer: &FutureProducer, topic: &str, messages: Vec<(String, String)>) {
    let mut deliveries = Vec::new();
    for (key, payload) in &messages {
        let record = FutureRecord::to(topic)
            .key(key.as_str())
            .payload(payload.as_str());
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("queued"),
        );
    }
    for d in deliveries {
        d.await
            .expect("delivered")
            .map_err(|(e, _)| e)
            .expect("stored");
    }
}

/// Sends the readings of devices `devices` for seconds `seconds` to one partition of `readings`.
async fn produce_to(
    producer: &FutureProducer,
    partition: i32,
    devices: std::ops::Range<i64>,
    seconds: std::ops::Range<i64>,
) {
    for s in seconds {
        for d in devices.clone() {
            let payload = windows::reading(d, s);
            let record = FutureRecord::<str, str>::to("readings")
                .partition(partition)
                .payload(payload.as_str());
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .expect("stored");
        }
    }
}

/// The readings of the 4 devices at second `s`, keyed by device.
fn readings(s: i64) -> Vec<(String, String)> {
    (0..4)
        .map(|d| (format!("m{d}"), windows::reading(d, s)))
        .collect()
}

/// A reading past the last window of every partition closes it (the watermark is the least of the
/// partitions' when they are read together).
fn closing(at_second: i64) -> Vec<(String, String)> {
    (0..4)
        .map(|d| (format!("m{d}"), windows::closing(d, at_second)))
        .collect()
}

/// Reads the topic `alerts` from its beginning, in a consumer group of its own.
fn alerts_reader(servers: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "the-test")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["alerts"]).expect("subscribed");
    consumer
}

fn source(servers: &str, topic: &str) -> String {
    format!(
        "CREATE SOURCE readings (key TEXT, device_id TEXT, temp BIGINT, ts TIMESTAMP,
                                 WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
           WITH (connector = 'kafka', bootstrap_servers = '{servers}', topic = '{topic}',
                 group_id = 'eddy-{topic}'"
    )
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the tansu Kafka broker, which .ci/run installs"]
async fn readings_from_a_topic_become_alerts_on_a_topic() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path());
    broker.create_topic("readings", 3).await;
    broker.create_topic("alerts", 3).await;
    let producer = broker.producer();
    let mut messages = Vec::new();
    for s in 0..60 {
        messages.extend(readings(s));
        if s == 30 {
            messages.push((
                "m0".into(),
                "{\"device_id\": \"m0\", \"temp\": \"hot\"".into(),
            ));
        }
    }
    messages.extend(closing(100));
    produce(&producer, "readings", messages).await;
    let query = dir.path().join("q.sql");
    std::fs::write(
        &query,
        format!(
            "{}, dead_letter = '{}');
             CREATE SINK alerts WITH (connector = 'kafka', bootstrap_servers = '{}',
                                      topic = 'alerts', key = 'device_id', alert_id = 'true');
             {QUERY_WINDOWS}",
            source(&broker.servers(), "readings"),
            dir.path().join("dead.jsonl").display(),
            broker.servers()
        ),
    )
    .expect("query written");
    let eddy = common::run_until_logged(&query, "assigned");
    let consumer = alerts_reader(&broker.servers());
    let mut alerts = Vec::new();
    while alerts.len() < 24 {
        let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("24 alerts within 60 s")
            .expect("a message");
        let alert: Value = serde_json::from_slice(m.payload().expect("payload")).expect("JSON");
        assert_eq!(
            m.key().map(|k| String::from_utf8_lossy(k).to_string()),
            alert["device_id"].as_str().map(str::to_string),
            "keyed by device"
        );
        alerts.push(alert);
    }
    drop(eddy);
    assert_eq!(windows_of(&alerts), expected_windows(60));
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).expect("dead letters");
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(dead.contains("hot") && dead.contains("readings/"), "{dead}");
}

/// A partition read to its end keeps holding the watermark back while it is silent for less
/// than `partition_idle_timeout`: partition 0 has devices m0 and m1 up to second 10 and is read
/// to its end, partition 1 then gets m2 and m3 up to second 60, and only then partition 0 the rest
/// of its readings. Had partition 0 stopped holding the watermark when it was read to its end,
/// partition 1 would have moved it to second 59 and the rest of m0 and m1 would be late.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the tansu Kafka broker, which .ci/run installs"]
async fn a_partition_that_caught_up_for_a_moment_still_holds_the_watermark() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path());
    broker.create_topic("readings", 2).await;
    let out = dir.path().join("alerts.jsonl");
    let query = dir.path().join("q.sql");
    std::fs::write(
        &query,
        format!(
            "{}, partition_idle_timeout = '10s');
             CREATE SINK alerts WITH (connector = 'file', path = '{}');
             {QUERY_WINDOWS}",
            source(&broker.servers(), "readings"),
            out.display()
        ),
    )
    .expect("query written");
    let eddy = common::run_until_logged(&query, "assigned");
    let producer = broker.producer();
    produce_to(&producer, 0, 0..2, 0..10).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    produce_to(&producer, 1, 2..4, 0..60).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    produce_to(&producer, 0, 0..2, 10..60).await;
    for partition in 0..2 {
        let closing = windows::closing(partition.into(), 100);
        let record = FutureRecord::<str, str>::to("readings")
            .partition(partition)
            .payload(closing.as_str());
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("stored");
    }
    let expected = expected_windows(60);
    let deadline = Instant::now() + Duration::from_secs(30);
    while windows_of(&read_alerts(&out)).len() < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(eddy);
    assert_eq!(windows_of(&read_alerts(&out)), expected);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the tansu Kafka broker, which .ci/run installs"]
async fn killed_and_restarted_eddy_resumes_from_its_checkpointed_offsets() {
    let _one = ONE_AT_A_TIME.lock().await;
    // Two busy processes beside it: the kills come while every process competes for the cores.
    let _load = common::CpuLoad::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path());
    broker.create_topic("readings", 3).await;
    let producer = broker.producer();
    let out = dir.path().join("alerts.jsonl");
    let query = dir.path().join("q.sql");
    std::fs::write(
        &query,
        format!(
            "{}, instance_id = 'eddy-readings');
             CREATE SINK alerts WITH (connector = 'file', path = '{}', alert_id = 'true');
             {QUERY_WINDOWS}",
            source(&broker.servers(), "readings"),
            out.display()
        ),
    )
    .expect("query written");
    let state = dir.path().join("state");
    let args = [
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--checkpoint-interval",
        "300ms",
    ];
    let mut eddy = Some(common::run_with_until_logged(&query, &args, "assigned"));
    for s in 0..300 {
        produce(&producer, "readings", readings(s)).await;
        if s % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if s == 100 || s == 200 {
            drop(eddy.take());
            eddy = Some(common::run_with_until_logged(&query, &args, "assigned"));
        }
    }
    produce(&producer, "readings", closing(400)).await;
    let expected = expected_windows(300);
    let deadline = Instant::now() + Duration::from_secs(90);
    while windows_of(&read_alerts(&out)).len() < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(eddy);
    assert_eq!(windows_of(&read_alerts(&out)), expected);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the tansu Kafka broker, which .ci/run installs"]
async fn the_broker_restarted_while_readings_and_alerts_flow_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path());
    broker.create_topic("readings", 3).await;
    broker.create_topic("alerts", 1).await;
    let out = dir.path().join("alerts.jsonl");
    let query = dir.path().join("q.sql");
    std::fs::write(
        &query,
        format!(
            "{});
             CREATE SINK alerts WITH (connector = 'kafka', bootstrap_servers = '{}',
                                      topic = 'alerts', key = 'device_id', alert_id = 'true',
                                      retries = '100', retry_backoff = '200ms');
             {QUERY_WINDOWS}",
            source(&broker.servers(), "readings"),
            broker.servers()
        ),
    )
    .expect("query written");
    let state = dir.path().join("state");
    let eddy = common::run_with_until_logged(
        &query,
        &[
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--checkpoint-interval",
            "300ms",
        ],
        "assigned",
    );
    let producer = broker.producer();
    for s in 0..100 {
        produce(&producer, "readings", readings(s)).await;
    }
    let broker = tokio::task::spawn_blocking(move || broker.restart())
        .await
        .expect("restarted");
    let producer = broker.producer();
    for s in 100..200 {
        produce(&producer, "readings", readings(s)).await;
    }
    produce(&producer, "readings", closing(300)).await;
    let consumer = alerts_reader(&broker.servers());
    let expected = expected_windows(200);
    let mut alerts = Vec::new();
    while windows_of(&alerts).len() < expected.len() {
        let m = match tokio::time::timeout(Duration::from_secs(90), consumer.recv()).await {
            Ok(m) => m.expect("a message"),
            Err(_) => {
                let got = windows_of(&alerts);
                let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
                panic!("no alert for 90 s; the windows without one: {missing:?}");
            }
        };
        alerts.push(serde_json::from_slice(m.payload().expect("payload")).expect("JSON"));
    }
    drop(eddy);
    std::fs::write(&out, "").ok();
    assert_eq!(windows_of(&alerts), expected);
}

/// A sink whose topic is not on the brokers says so at its first write (Eddy does not create
/// topics), and its alerts go to the dead letters with that reason at once, instead of after
/// waiting for the topic until they time out, retry after retry.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the tansu Kafka broker, which .ci/run installs"]
async fn a_sink_to_a_topic_that_does_not_exist_says_so() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path());
    std::fs::write(
        dir.path().join("input.jsonl"),
        windows::reading(0, 0) + "\n",
    )
    .expect("input written");
    std::fs::write(
        dir.path().join("q.sql"),
        format!(
            "CREATE SOURCE readings (device_id TEXT, temp BIGINT, ts TIMESTAMP)
               WITH (connector = 'file', path = 'input.jsonl');
             CREATE SINK alerts WITH (connector = 'kafka', bootstrap_servers = '{}',
                                      topic = 'no-such-topic');
             INSERT INTO alerts SELECT device_id, temp FROM readings;",
            broker.servers()
        ),
    )
    .expect("query written");
    let output = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || common::run_eddy(&dir, &["run", "q.sql"], &[])
    })
    .await
    .expect("ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 rows not written: topic no-such-topic does not exist on the brokers"),
        "{stderr}"
    );
    assert!(!stderr.contains("retry"), "{stderr}");
}
