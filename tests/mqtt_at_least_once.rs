//! At-least-once ingest over MQTT at QoS 1, against a private Mosquitto (Debian's build, started
//! on a free port with persistence): tens of thousands of readings published at a steady rate,
//! and Eddy (`--state-dir`, a persistent session) killed with SIGKILL at random moments and
//! started again, the broker restarted, the broker's window raised to 5,000, a sink slower than
//! the readings, CPU load beside it. Every window's alert must come exactly once after
//! de-duplication by `alert_id`, with the count and sum computed here from what was published.
//!
//! The broker keeps its shipped settings (an in-flight window of 20 unacknowledged messages per
//! MQTT 3.1.1 client) but one: `max_queued_messages 0`. Mosquitto otherwise drops what passes
//! 1,000 queued messages for a client that is away, and readings keep coming while Eddy restarts.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{CpuLoad, Lcg, Running};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const T0: i64 = 1_767_225_600_000;
/// Readings are 10 ms of event time apart: a 1-second window holds 100.
const PER_WINDOW: u64 = 100;
const DEVICES: u64 = 10;

#[derive(Clone, Copy)]
enum Fault {
    None,
    /// SIGKILL this many times at random moments, restarting at once.
    Kills(usize),
    /// The broker stopped (it saves its sessions) and started again halfway.
    BrokerRestart,
}

#[derive(Clone, Copy)]
struct Scenario {
    protocol: &'static str,
    /// More lines for mosquitto.conf.
    broker: &'static str,
    readings: u64,
    /// Readings published a second.
    rate: u64,
    checkpoint_interval: &'static str,
    fault: Fault,
    /// Alerts go to a pipe read at this many lines a second.
    slow_sink: Option<u64>,
    /// Two busy processes run beside the test.
    cpu_load: bool,
}

const DEFAULT: Scenario = Scenario {
    protocol: "v3.1.1",
    broker: "",
    readings: 30_000,
    rate: 2_000,
    checkpoint_interval: "1s",
    fault: Fault::Kills(3),
    slow_sink: None,
    cpu_load: false,
};

#[tokio::test(flavor = "multi_thread")]
async fn random_kills_under_a_steady_stream_lose_no_reading_and_count_none_twice() {
    run(DEFAULT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn random_kills_under_cpu_load_lose_no_reading() {
    run(Scenario {
        cpu_load: true,
        ..DEFAULT
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn random_kills_over_mqtt5_lose_no_reading() {
    run(Scenario {
        protocol: "v5",
        ..DEFAULT
    })
    .await;
}

/// The broker's window at 5,000 and checkpoints 10 s apart: one checkpoint covers about 20,000
/// messages (each checkpoint once wedged the source when it released its acknowledgements).
#[tokio::test(flavor = "multi_thread")]
async fn a_window_of_5000_and_checkpoints_covering_20000_messages_lose_nothing() {
    run(Scenario {
        broker: "max_inflight_messages 5000\n",
        checkpoint_interval: "10s",
        fault: Fault::None,
        ..DEFAULT
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_window_of_5000_with_kills_under_cpu_load_loses_nothing() {
    run(Scenario {
        broker: "max_inflight_messages 5000\n",
        checkpoint_interval: "10s",
        cpu_load: true,
        ..DEFAULT
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_mid_stream_loses_nothing() {
    run(Scenario {
        fault: Fault::BrokerRestart,
        ..DEFAULT
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_under_cpu_load_loses_nothing() {
    run(Scenario {
        fault: Fault::BrokerRestart,
        cpu_load: true,
        ..DEFAULT
    })
    .await;
}

/// A sink slower than the alerts holds the queries, and with them the checkpoints, back; the
/// readings are acknowledged all the same, and kills lose none.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_sink_holding_checkpoints_back_with_kills_loses_nothing() {
    run(Scenario {
        readings: 12_000,
        slow_sink: Some(400),
        fault: Fault::Kills(2),
        ..DEFAULT
    })
    .await;
}

/// A broker that stops answering (SIGSTOP) does not keep SIGTERM from ending Eddy.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_eddy_while_the_broker_hangs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (broker, port, _) = common::mosquitto::private(dir.path(), "max_queued_messages 0\n");
    let query = write_query(dir.path(), port, &DEFAULT, &dir.path().join("alerts.jsonl"));
    let state = dir.path().join("state");
    let mut eddy = start_eddy(&query, &state, "1s");
    let publisher = tokio::spawn(publish(port, "hang-pub", 0, 4_000, 2_000));
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let pid = broker.pid().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &eddy.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    let exited = loop {
        if let Ok(Some(status)) = eddy.0.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    publisher.abort();
    let status = exited.expect("eddy did not end within 15 s of SIGTERM while the broker hung");
    assert!(status.success(), "eddy exited with {status}");
}

async fn run(s: Scenario) {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker_config = format!("max_queued_messages 0\n{}", s.broker);
    let (mut broker, port, config) = common::mosquitto::private(dir.path(), &broker_config);
    let _load = s.cpu_load.then(CpuLoad::start);
    let alerts = dir.path().join("alerts.jsonl");
    let sink_path = match s.slow_sink {
        Some(_) => dir.path().join("alerts.fifo"),
        None => alerts.clone(),
    };
    let slow = s
        .slow_sink
        .map(|lines| SlowReader::start(&sink_path, &alerts, lines));
    let query = write_query(dir.path(), port, &s, &sink_path);
    let state = dir.path().join("state");
    let mut eddy = start_eddy(&query, &state, s.checkpoint_interval);

    let mut rng = Lcg(0x5eed ^ std::process::id() as u64);
    let mut peak_rss = 0;
    match s.fault {
        Fault::None => publish(port, "pub", 0, s.readings, s.rate).await,
        Fault::Kills(n) => {
            let publisher = tokio::spawn(publish(port, "pub", 0, s.readings, s.rate));
            let seconds = s.readings / s.rate;
            for _ in 0..n {
                // Somewhere in the publishing time, spread over the kills.
                let wait = 800 + rng.next() % (seconds * 1000 / (n as u64 + 1)).max(1);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                peak_rss = peak_rss.max(rss(eddy.0.id()));
                drop(eddy);
                eddy = start_eddy(&query, &state, s.checkpoint_interval);
            }
            publisher.await.expect("published");
        }
        Fault::BrokerRestart => {
            let half = s.readings / 2;
            publish(port, "pub-1", 0, half, s.rate).await;
            broker.stop();
            tokio::time::sleep(Duration::from_millis(500)).await;
            broker = common::mosquitto::Mosquitto::start(&config);
            common::mosquitto::wait_for_port(port);
            publish(port, "pub-2", half, s.readings, s.rate).await;
        }
    }
    // One reading a minute of event time later closes every window.
    publish_closing(port, s.readings).await;

    let expected = expected_windows(s.readings);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut got = Alerts::read(&alerts);
    while got.windows.len() < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak_rss = peak_rss.max(rss(eddy.0.id()));
        got = Alerts::read(&alerts);
    }
    drop(eddy);
    drop(slow);
    let missing: Vec<_> = expected
        .iter()
        .filter(|(k, _)| !got.windows.contains_key(*k))
        .map(|(k, _)| k)
        .collect();
    let wrong: Vec<_> = got
        .windows
        .iter()
        .filter(|(k, v)| {
            expected
                .get(*k)
                .is_some_and(|e| v.len() != 1 || !v.contains(e))
        })
        .collect();
    eprintln!(
        "{} alerts ({} distinct ids) for {} windows; Eddy's peak RSS sampled {} MB",
        got.lines,
        got.ids,
        expected.len(),
        peak_rss / 1_000_000
    );
    assert!(
        missing.is_empty() && wrong.is_empty(),
        "{} of {} windows missing (first {:?}); {} windows counted wrong or twice (first {:?})",
        missing.len(),
        expected.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        wrong.len(),
        wrong.iter().take(5).collect::<Vec<_>>()
    );
    broker.stop();
}

fn write_query(dir: &Path, port: u16, s: &Scenario, sink: &Path) -> PathBuf {
    let query = dir.join("q.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (device_id TEXT, seq BIGINT, ts TIMESTAMP,
                WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
               WITH (connector = 'mqtt', url = 'mqtt://127.0.0.1:{port}', topic = 'alo/+/reading',
                     qos = 1, clean_session = false, client_id = 'eddy-alo', protocol = '{}');
             CREATE SINK alerts WITH (connector = 'file', path = '{}', alert_id = 'true');
             INSERT INTO alerts
             SELECT device_id, window_start, count(*) AS n, sum(seq) AS s
             FROM TUMBLE(readings, ts, INTERVAL '1' SECOND)
             GROUP BY device_id, window_start, window_end;",
            s.protocol,
            sink.display()
        ),
    )
    .expect("query written");
    query
}

fn start_eddy(query: &Path, state: &Path, interval: &str) -> Running {
    let state = state.to_str().expect("utf-8");
    common::run_with_until_logged(
        query,
        &["--state-dir", state, "--checkpoint-interval", interval],
        "subscribed to",
    )
}

fn ts(seq: u64) -> i64 {
    T0 + seq as i64 * 10
}

fn reading(seq: u64) -> (String, String) {
    let device = seq % DEVICES;
    (
        format!("alo/m{device}/reading"),
        format!(
            r#"{{"device_id":"m{device}","seq":{seq},"ts":{}}}"#,
            ts(seq)
        ),
    )
}

/// Publishes readings `from..to` at QoS 1, `rate` a second in ticks of 10 ms, and waits until the
/// broker has acknowledged them all.
async fn publish(port: u16, id: &str, from: u64, to: u64, rate: u64) {
    let mut options = MqttOptions::new(format!("{id}-{}", std::process::id()), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(1000);
    let (client, mut events) = AsyncClient::new(options, 10_000);
    let total = to - from;
    let acks = tokio::spawn(async move {
        let mut acked = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while acked < total && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                _ => {}
            }
        }
        acked
    });
    let per_tick = (rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut seq = from;
    while seq < to {
        tick.tick().await;
        for _ in 0..per_tick.min(to - seq) {
            let (topic, payload) = reading(seq);
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .expect("queued");
            seq += 1;
        }
    }
    let acked = acks.await.expect("joined");
    assert_eq!(
        acked, total,
        "the broker acknowledged {acked} of {total} readings"
    );
    let _ = client.disconnect().await;
}

/// A reading of one more device a minute of event time after the last: every window closes.
async fn publish_closing(port: u16, readings: u64) {
    let mut options = MqttOptions::new(format!("close-{}", std::process::id()), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 10);
    let payload = format!(
        r#"{{"device_id":"closing","seq":0,"ts":{}}}"#,
        ts(readings) + 60_000
    );
    client
        .publish("alo/closing/reading", QoS::AtLeastOnce, false, payload)
        .await
        .expect("queued");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
            tokio::time::timeout(Duration::from_secs(1), events.poll()).await
        {
            break;
        }
    }
    let _ = client.disconnect().await;
}

type Window = (String, String);

/// Every window's (count, sum of seq), computed from what is published.
fn expected_windows(readings: u64) -> BTreeMap<Window, (u64, u64)> {
    let mut windows = BTreeMap::new();
    for seq in 0..readings {
        let start = ts(seq - seq % PER_WINDOW);
        let key = (format!("m{}", seq % DEVICES), show_time(start));
        let e = windows.entry(key).or_insert((0, 0));
        e.0 += 1;
        e.1 += seq;
    }
    windows
}

fn show_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("a time")
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The alerts written, de-duplicated by `alert_id`: each window with the (count, sum) of every
/// distinct alert for it.
struct Alerts {
    windows: BTreeMap<Window, BTreeSet<(u64, u64)>>,
    lines: usize,
    ids: usize,
}

impl Alerts {
    fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut ids = BTreeSet::new();
        let mut windows: BTreeMap<Window, BTreeSet<(u64, u64)>> = BTreeMap::new();
        let mut lines = 0;
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            lines += 1;
            let device = v["device_id"].as_str().unwrap_or_default().to_string();
            if device == "closing" {
                continue;
            }
            if !ids.insert(v["alert_id"].as_str().unwrap_or_default().to_string()) {
                continue;
            }
            let start = v["window_start"].as_str().unwrap_or_default().to_string();
            windows
                .entry((device, start))
                .or_default()
                .insert((v["n"].as_u64().unwrap_or(0), v["s"].as_u64().unwrap_or(0)));
        }
        Self {
            windows,
            lines,
            ids: ids.len(),
        }
    }
}

/// Resident memory of a process in bytes (0 once it is gone).
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Reads a named pipe `lines_per_second` lines at a time into a file, reopening it each time a
/// writer (an Eddy that was killed) goes away.
struct SlowReader {
    stop: Arc<AtomicBool>,
    fifo: PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SlowReader {
    fn start(fifo: &Path, out: &Path, lines_per_second: u64) -> Self {
        let made = std::process::Command::new("mkfifo")
            .arg(fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo failed");
        let stop = Arc::new(AtomicBool::new(false));
        let (fifo_path, out, flag) = (fifo.to_path_buf(), out.to_path_buf(), Arc::clone(&stop));
        let pause = Duration::from_micros(1_000_000 / lines_per_second.max(1));
        let thread = std::thread::spawn(move || {
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&out)
                .expect("output opened");
            while !flag.load(Ordering::Relaxed) {
                let Ok(pipe) = std::fs::File::open(&fifo_path) else {
                    return;
                };
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                    std::thread::sleep(pause);
                }
            }
        });
        Self {
            stop,
            fifo: fifo.to_path_buf(),
            thread: Some(thread),
        }
    }
}

impl Drop for SlowReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // A reader waiting for a writer to open the pipe wakes up and sees the flag.
        let _ = std::fs::OpenOptions::new().write(true).open(&self.fifo);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
