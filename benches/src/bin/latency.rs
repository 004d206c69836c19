//! Alert latency over MQTT: readings stamped with the wall clock are published to an embedded
//! broker (or the one given with `--broker`) at a steady rate, `eddy run` evaluates a 1-second
//! tumbling window per device, and a subscriber (or, with `--webhook`, an HTTP endpoint this
//! program serves) measures, for each alert, how long after its window's end it arrived.
//!
//!     cargo build --release --workspace --bins
//!     cargo run --release -p eddy-benches --bin latency -- --rate 20000 --devices 100
//!
//! A window can fire only when the watermark passes its end, that is once a reading stamped the
//! watermark bound (here 100 ms) past the end has arrived; the figures include that wait.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use eddy_benches::{Killed, now_ms};
use eddy_connectors::mqtt::EmbeddedBroker;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

const BOUND_MS: i64 = 100;

#[derive(Parser)]
#[command(about = "Measures alert latency through an embedded MQTT broker and `eddy run`")]
struct Args {
    /// Readings per second, over all devices.
    #[arg(long, default_value_t = 20_000)]
    rate: u32,
    /// Distinct devices.
    #[arg(long, default_value_t = 100)]
    devices: u32,
    /// How long readings are published; the first 2 seconds are not measured.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The eddy binary (default: `eddy` next to this program).
    #[arg(long)]
    eddy: Option<PathBuf>,
    /// Print Eddy's resident memory every this many seconds (a soak test).
    #[arg(long)]
    rss_every: Option<u64>,
    /// Checkpoints this often (`--state-dir`), with readings published and subscribed at QoS 1
    /// on a persistent session, so that Eddy acknowledges them after the checkpoints.
    #[arg(long, value_name = "DURATION")]
    checkpoint_interval: Option<String>,
    /// With checkpoints, the QoS of the readings: 1 (the default) exercises the acknowledgements
    /// after checkpoints, 0 the snapshots alone.
    #[arg(long, default_value_t = 1)]
    checkpoint_qos: u8,
    /// An MQTT broker to use (host:port, e.g. Mosquitto's 127.0.0.1:1883) instead of the
    /// embedded one.
    #[arg(long)]
    broker: Option<String>,
    /// The source's MQTT version: v3.1.1 or v5.
    #[arg(long, default_value = "v3.1.1")]
    protocol: String,
    /// Alerts go to a webhook (an HTTP endpoint this program serves, one alert a request)
    /// instead of an MQTT topic: the latency from the window's end to the webhook's receipt.
    #[arg(long)]
    webhook: bool,
}

/// Resident memory of a process, from /proc, in bytes.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let eddy = eddy_benches::eddy_binary(args.eddy.as_deref())?;
    let embedded;
    let (host, port) = match &args.broker {
        Some(b) => eddy_benches::host_port(b)?,
        None => {
            embedded = EmbeddedBroker::start().await?;
            ("127.0.0.1".to_string(), embedded.port())
        }
    };
    let url = format!("mqtt://{host}:{port}");
    let run = std::process::id();
    let dir = tempfile_dir()?;
    let query = dir.join("latency.sql");
    let acks = if args.checkpoint_interval.is_some() && args.checkpoint_qos > 0 {
        format!(", qos = 1, clean_session = false, client_id = 'latency-eddy-{run}'")
    } else {
        String::new()
    };
    let qos = if args.checkpoint_interval.is_some() && args.checkpoint_qos > 0 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    // Each alert's arrival time minus its window's end, from the MQTT subscriber or the webhook.
    let (arrivals_tx, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<(i64, Vec<u8>)>();
    let mut subscriber = None;
    let sink = if args.webhook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/alerts", listener.local_addr()?);
        let tx = arrivals_tx.clone();
        let app = axum::Router::new().route(
            "/alerts",
            axum::routing::post(move |body: axum::body::Bytes| {
                let _ = tx.send((now_ms(), body.to_vec()));
                async { "ok" }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("connector = 'webhook', url = '{url}'")
    } else {
        let (client, mut sub_events) = client(&format!("latency-sub-{run}"), &host, port);
        client
            .subscribe(format!("bench-alerts-{run}/#"), QoS::AtMostOnce)
            .await?;
        let tx = arrivals_tx.clone();
        tokio::spawn(async move {
            loop {
                match sub_events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((now_ms(), p.payload.to_vec()));
                    }
                    Ok(Event::Incoming(Packet::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        });
        subscriber = Some(client);
        format!("connector = 'mqtt', url = '{url}', topic = 'bench-alerts-{run}/{{device_id}}'")
    };
    drop(arrivals_tx);
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '{BOUND_MS}' MILLISECOND)
  WITH (connector = 'mqtt', url = '{url}', topic = 'bench-{run}/+/reading', linger = '5ms',
        protocol = '{}'{acks});
CREATE SINK alerts WITH ({sink});
INSERT INTO alerts
SELECT device_id, window_start, window_end, avg(temp) AS avg_temp, count(*) AS readings
FROM TUMBLE(readings, ts, INTERVAL '1' SECOND)
GROUP BY device_id, window_start, window_end;
",
            args.protocol
        ),
    )?;
    let measure_from = now_ms() + 2_000;
    let measured = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = std::sync::Arc::clone(&measured);
    tokio::spawn(async move {
        while let Some((arrived, payload)) = arrivals.recv().await {
            let Ok(alert) = serde_json::from_slice::<Value>(&payload) else {
                continue;
            };
            let Some(end) = alert["window_end"]
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            else {
                continue;
            };
            let end = end.timestamp_millis();
            if end > measure_from
                && let Ok(mut m) = into.lock()
            {
                m.push(arrived - end);
            }
        }
    });

    let mut command = Command::new(&eddy);
    command.args(["run", "--quiet", "--stats"]).arg(&query);
    if let Some(every) = &args.checkpoint_interval {
        let state = dir.join("state");
        let _ = std::fs::remove_dir_all(&state);
        command
            .arg("--state-dir")
            .arg(&state)
            .args(["--checkpoint-interval", every]);
    }
    let mut child = command
        .env("EDDY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", eddy.display()))?;
    let stderr = child.stderr.take().context("stderr")?;
    let pid = child.id();
    let running = Killed(child);
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("subscribed to") => break,
            Some(Ok(_)) if Instant::now() < deadline => {}
            _ => bail!("eddy did not subscribe within 30 s"),
        }
    }
    std::thread::spawn(move || for _ in lines.by_ref() {});

    // The publisher: `rate` readings a second, in ticks of 10 ms, stamped with the clock.
    let (publisher, mut pub_events) = client(&format!("latency-pub-{run}"), &host, port);
    tokio::spawn(async move { while pub_events.poll().await.is_ok() {} });
    let per_tick = (args.rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let started = Instant::now();
    let mut published = 0u64;
    let mut device = 0u32;
    let mut next_rss = args.rss_every.map(|s| Duration::from_secs(s.max(1)));
    let mut peak_rss = 0u64;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tick.tick().await;
        if let (Some(at), Some(every)) = (next_rss, args.rss_every)
            && started.elapsed() >= at
        {
            let now = rss(pid).unwrap_or(0);
            peak_rss = peak_rss.max(now);
            println!(
                "{:>5} s: {} readings published, Eddy's RSS {} MB",
                at.as_secs(),
                published,
                now / 1_000_000
            );
            next_rss = Some(at + Duration::from_secs(every.max(1)));
        }
        let ts = now_ms();
        for _ in 0..per_tick {
            device = (device + 1) % args.devices;
            let payload = format!(
                r#"{{"device_id":"machine-{device:04}","temp":{},"ts":{ts}}}"#,
                20 + device % 50
            );
            publisher
                .publish(format!("bench-{run}/{device}/reading"), qos, false, payload)
                .await?;
            published += 1;
        }
    }
    let rate = published as f64 / started.elapsed().as_secs_f64();
    if args.rss_every.is_some() {
        println!("peak RSS sampled: {} MB", peak_rss / 1_000_000);
    }
    // One more second so the last windows close, then stop.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    drop(running);
    if let Some(s) = subscriber {
        s.disconnect().await?;
    }
    // What is on its way arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = measured.lock().map(|m| m.clone()).unwrap_or_default();
    if latencies.is_empty() {
        bail!("no alert arrived");
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "{:.0} readings/s from {} devices for {} s; {} alerts measured",
        rate,
        args.devices,
        args.seconds,
        latencies.len()
    );
    println!(
        "alert latency after window end (includes the {BOUND_MS} ms watermark bound): \
         p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
    Ok(())
}

fn client(id: &str, host: &str, port: u16) -> (AsyncClient, rumqttc::EventLoop) {
    let mut options = MqttOptions::new(id, host, port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(1000);
    options.set_max_packet_size(1 << 20, 1 << 20);
    AsyncClient::new(options, 10_000)
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("eddy-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
