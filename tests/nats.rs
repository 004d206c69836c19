//! The NATS connector against real NATS servers: the machine's (127.0.0.1:4222, JetStream on;
//! `.ci/run` starts it when it is down) and private `nats-server -js` processes on free ports for
//! the restart test. Readings read from a JetStream stream become windows whose alerts land on
//! another stream, checked against counts computed here; a bad message is dead-lettered; Eddy
//! killed with SIGKILL and started again resumes from the stream sequence its checkpoint recorded
//! (no window counts a reading twice or misses one); the server restarted loses nothing; a plain
//! subscription and plain publishing work without JetStream. Each test uses streams and subjects
//! of its own, named after the process and the test.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use common::windows::{QUERY_WINDOWS, closing, expected_windows, reading, windows_of};
use futures::StreamExt;
use serde_json::Value;

const URL: &str = "nats://127.0.0.1:4222";
fn id(test: &str) -> String {
    format!("{test}{}", std::process::id())
}

async fn connect(url: &str) -> async_nats::Client {
    async_nats::connect(url).await.unwrap_or_else(|e| {
        panic!("NATS with JetStream must listen on {url} (nats-server -js): {e}")
    })
}

/// A stream `name` holding `subjects`, made afresh.
async fn fresh_stream(js: &jetstream::Context, name: &str, subjects: &str) -> stream::Stream {
    let _ = js.delete_stream(name).await;
    js.create_stream(stream::Config {
        name: name.to_string(),
        subjects: vec![subjects.to_string()],
        ..Default::default()
    })
    .await
    .expect("stream created")
}

/// Every message of stream `name` as JSON.
async fn stream_messages(js: &jetstream::Context, name: &str) -> Vec<Value> {
    let stream = js.get_stream(name).await.expect("alerts stream");
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut out = Vec::new();
    let mut batch = consumer
        .fetch()
        .max_messages(100_000)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .expect("fetch");
    while let Some(m) = batch.next().await {
        let m = m.expect("message");
        out.push(serde_json::from_slice(&m.payload).expect("alert is JSON"));
    }
    out
}

/// Waits up to `within` until stream `name` holds `n` messages; returns how many it holds.
async fn wait_for_messages(js: &jetstream::Context, name: &str, n: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let mut s = js.get_stream(name).await.expect("stream");
        let held = s.info().await.expect("info").state.messages;
        if held >= n || Instant::now() > deadline {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    payloads: impl IntoIterator<Item = String>,
) {
    let mut acks = Vec::new();
    for p in payloads {
        acks.push(
            js.publish(subject.to_string(), p.into())
                .await
                .expect("published"),
        );
    }
    for a in acks {
        a.await.expect("stored");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readings_from_a_stream_become_alerts_on_a_stream() {
    let id = id("js");
    let client = connect(URL).await;
    let js = jetstream::new(client);
    let readings = format!("R{id}");
    let alerts = format!("A{id}");
    fresh_stream(&js, &readings, &format!("{id}.readings.>")).await;
    fresh_stream(&js, &alerts, &format!("{id}.alerts.>")).await;
    let mut payloads = Vec::new();
    for s in 0..60 {
        for d in 0..4 {
            payloads.push(reading(d, s));
        }
        if s == 30 {
            payloads.push("{\"device_id\": \"m0\", \"temp\": \"hot\"".to_string());
        }
    }
    // A reading past the last window closes it.
    payloads.push(closing(0, 100));
    publish_all(&js, &format!("{id}.readings.plant"), payloads).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let query = dir.path().join("q.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (device_id TEXT, temp BIGINT, ts TIMESTAMP,
                                     WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'nats', url = '{URL}', stream = '{readings}',
                     dead_letter = '{}');
             CREATE SINK alerts WITH (connector = 'nats', url = '{URL}', jetstream = 'true',
                                      subject = '{id}.alerts.{{device_id}}', alert_id = 'true');
             {QUERY_WINDOWS}",
            dir.path().join("dead.jsonl").display()
        ),
    )
    .expect("query written");
    let eddy = common::run_until_logged(&query, "reading stream");
    let held = wait_for_messages(&js, &alerts, 24, Duration::from_secs(30)).await;
    drop(eddy);
    assert_eq!(held, 24, "4 devices, 6 windows");
    let got = stream_messages(&js, &alerts).await;
    assert!(got.iter().all(|a| a["alert_id"].is_string()));
    assert_eq!(windows_of(&got), expected_windows(60));
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).expect("dead letters");
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(dead.contains("hot"), "{dead}");
    let _ = js.delete_stream(&readings).await;
    let _ = js.delete_stream(&alerts).await;
}

/// Publishes readings of seconds `from..to`, `per_second` seconds of event time each real second.
async fn publish_seconds(js: &jetstream::Context, subject: &str, from: i64, to: i64) {
    for s in from..to {
        publish_all(js, subject, (0..4).map(|d| reading(d, s))).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_and_restarted_eddy_resumes_from_its_checkpointed_sequence() {
    let id = id("kill");
    // Two busy processes beside it: the kills come while every process competes for the cores.
    let _load = common::CpuLoad::start();
    let client = connect(URL).await;
    let js = jetstream::new(client);
    let readings = format!("R{id}");
    fresh_stream(&js, &readings, &format!("{id}.readings.>")).await;
    let subject = format!("{id}.readings.plant");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("alerts.jsonl");
    let query = dir.path().join("q.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (device_id TEXT, temp BIGINT, ts TIMESTAMP,
                                     WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'nats', url = '{URL}', stream = '{readings}',
                     durable = 'eddy-{id}', ack_wait = '2s');
             CREATE SINK alerts WITH (connector = 'file', path = '{}', alert_id = 'true');
             {QUERY_WINDOWS}",
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
    let eddy = common::run_with_until_logged(&query, &args, "reading stream");
    publish_seconds(&js, &subject, 0, 100).await;
    // Killed with windows open, messages read but not acknowledged, and some not yet read.
    common::wait_until("some alerts", Duration::from_secs(30), || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() >= 12)
    });
    drop(eddy);
    // Past the ack wait: the server would send unacknowledged messages again, behind the
    // watermark, if the restarted source waited for them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    publish_seconds(&js, &subject, 100, 180).await;
    let eddy = common::run_with_until_logged(&query, &args, "reading stream");
    publish_all(&js, &subject, [closing(0, 300)]).await;
    common::wait_until("every window", Duration::from_secs(60), || {
        std::fs::read_to_string(&out).is_ok_and(|t| {
            let alerts: Vec<Value> = t
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            windows_of(&alerts).len() >= 72
        })
    });
    drop(eddy);
    let text = std::fs::read_to_string(&out).expect("alerts");
    let alerts: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // Alerts computed again after the restart carry the same id and the same values.
    assert_eq!(windows_of(&alerts), expected_windows(180));
    let _ = js.delete_stream(&readings).await;
}

/// A private `nats-server -js` on a free port, its store in `dir`.
struct PrivateServer {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl PrivateServer {
    fn start(dir: &Path, port: Option<u16>) -> Self {
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        });
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (apt install nats-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGTERM, then the same server started again on the same port and store.
    fn restart(mut self) -> Self {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(500));
        let (dir, port) = (self.dir.clone(), self.port);
        drop(self);
        Self::start(&dir, Some(port))
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_restarted_while_readings_and_alerts_flow_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).expect("store dir");
    let server = PrivateServer::start(&store, None);
    let url = server.url();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url.as_str())
        .await
        .expect("connected");
    let js = jetstream::new(client);
    for (name, subjects) in [("READINGS", "readings.>"), ("ALERTS", "alerts.>")] {
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("stream created");
    }
    let query = dir.path().join("q.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (device_id TEXT, temp BIGINT, ts TIMESTAMP,
                                     WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'nats', url = '{url}', stream = 'READINGS');
             CREATE SINK alerts WITH (connector = 'nats', url = '{url}', jetstream = 'true',
                                      subject = 'alerts.{{device_id}}', alert_id = 'true',
                                      timeout = '2s', retries = '100', retry_backoff = '100ms');
             {QUERY_WINDOWS}"
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
        "reading stream",
    );
    publish_seconds(&js, "readings.plant", 0, 60).await;
    let server = tokio::task::spawn_blocking(move || server.restart())
        .await
        .expect("restarted");
    // The publisher's client reconnects by itself; JetStream is back once the stream answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    while js.get_stream("READINGS").await.is_err() {
        assert!(Instant::now() < deadline, "JetStream did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publish_seconds(&js, "readings.plant", 60, 120).await;
    publish_all(&js, "readings.plant", [closing(0, 200)]).await;
    let held = wait_for_messages(&js, "ALERTS", 48, Duration::from_secs(60)).await;
    drop(eddy);
    let got = stream_messages(&js, "ALERTS").await;
    assert_eq!(
        windows_of(&got),
        expected_windows(120),
        "{held} alerts held"
    );
    // Nats-Msg-Id: an alert sent again after the restart is not stored twice.
    assert_eq!(got.len(), 48);
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_subscription_and_plain_publishing_work_without_jetstream() {
    let id = id("core");
    let client = connect(URL).await;
    let mut alerts = client
        .subscribe(format!("{id}.alerts.>"))
        .await
        .expect("subscribed");
    client.flush().await.expect("subscription made");
    let dir = tempfile::tempdir().expect("temp dir");
    let query = dir.path().join("q.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (subject TEXT, device_id TEXT, temp BIGINT, ts TIMESTAMP,
                                     WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'nats', url = '{URL}', jetstream = 'false',
                     subject = '{id}.readings.*', queue = 'eddy');
             CREATE SINK alerts WITH (connector = 'nats', url = '{URL}',
                                      subject = '{id}.alerts.{{device_id}}');
             INSERT INTO alerts
             SELECT device_id, subject, temp FROM readings WHERE temp > 25;"
        ),
    )
    .expect("query written");
    let eddy = common::run_until_logged(&query, "subscribed to");
    for s in 0..20 {
        for d in 0..4 {
            client
                .publish(format!("{id}.readings.m{d}"), reading(d, s).into())
                .await
                .expect("published");
        }
    }
    client.flush().await.expect("flushed");
    // temp = 20 + (s + d) % 7 is 26 once every 7 seconds per device.
    let expected: usize = (0..20)
        .flat_map(|s| (0..4).map(move |d| (s, d)))
        .filter(|(s, d)| 20 + (s + d) % 7 > 25)
        .count();
    let mut got = Vec::new();
    while got.len() < expected {
        let m = tokio::time::timeout(Duration::from_secs(20), alerts.next())
            .await
            .expect("alerts within 20 s")
            .expect("subscription open");
        let v: Value = serde_json::from_slice(&m.payload).expect("JSON");
        assert_eq!(
            m.subject.as_str(),
            format!("{id}.alerts.{}", v["device_id"].as_str().expect("device"))
        );
        assert_eq!(
            v["subject"].as_str().expect("subject column"),
            format!("{id}.readings.{}", v["device_id"].as_str().expect("device"))
        );
        got.push(v);
    }
    drop(eddy);
    assert_eq!(got.len(), expected);
}
