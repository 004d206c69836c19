//! QoS 1 ingest rate: publishers send readings at QoS 1 to a broker as fast as it takes them for a
//! number of seconds, while one consumer subscribes at QoS 1: first a bare subscriber
//! (`mosquitto_sub -q 1`, and a rumqttc client that acknowledges on receipt), then `eddy run` with
//! checkpoints (a persistent session, every message acknowledged once its ingest log has synced
//! it) over a query that keeps no state. Each consumer's rate is what it received divided by the
//! publishing time: the broker drops what a slow consumer cannot take once its queue is full
//! (Mosquitto's `max_queued_messages`, 1,000 by default), so what arrives is what it can take.
//!
//!     cargo build --release --workspace --bins
//!     cargo run --release -p eddy-benches --bin ingest -- --broker 127.0.0.1:1883 --protocol v5

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use eddy_benches::Killed;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

#[derive(Parser)]
#[command(about = "Measures QoS 1 ingest: a bare subscriber, then `eddy run` with checkpoints")]
struct Args {
    /// The broker, host:port.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,
    /// How long the publishers publish, per consumer measured.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Publishing clients.
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// Eddy's MQTT version: v3.1.1 or v5.
    #[arg(long, default_value = "v5")]
    protocol: String,
    /// Eddy's checkpoint interval.
    #[arg(long, default_value = "1s")]
    checkpoint_interval: String,
    /// Only Eddy, not the bare subscribers.
    #[arg(long)]
    no_bare: bool,
    /// The eddy binary (default: `eddy` next to this program).
    #[arg(long)]
    eddy: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (host, port) = eddy_benches::host_port(&args.broker)?;
    let eddy = eddy_benches::eddy_binary(args.eddy.as_deref())?;
    let run = std::process::id();
    let topic = format!("ingest-{run}");
    println!(
        "{} publishers at QoS 1 for {} s each run, broker {}",
        args.publishers, args.seconds, args.broker
    );

    if !args.no_bare {
        // mosquitto_sub -q 1: its output lines are the messages it received.
        if let Ok(child) = Command::new("mosquitto_sub")
            .args(["-h", &host, "-p", &port.to_string(), "-q", "1"])
            .args(["-t", &format!("{topic}/sub/+")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            let mut child = Killed(child);
            let stdout = child.0.stdout.take().context("stdout")?;
            let lines = Arc::new(AtomicU64::new(0));
            let counted = Arc::clone(&lines);
            std::thread::spawn(move || {
                for _ in BufReader::new(stdout).lines().map_while(Result::ok) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            });
            tokio::time::sleep(Duration::from_millis(500)).await;
            let published = publish(&host, port, &format!("{topic}/sub"), &args).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            report(
                "mosquitto_sub -q 1",
                lines.load(Ordering::Relaxed),
                published,
                &args,
            );
        } else {
            println!("mosquitto_sub not found: skipped");
        }

        // A rumqttc subscriber acknowledging on receipt.
        let mut options = MqttOptions::new(format!("ingest-bare-{run}"), &host, port);
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(options, 1000);
        client
            .subscribe(format!("{topic}/bare/+"), QoS::AtLeastOnce)
            .await?;
        let received = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&received);
        let subscriber = tokio::spawn(async move {
            while let Ok(event) = events.poll().await {
                if let Event::Incoming(Packet::Publish(_)) = event {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let published = publish(&host, port, &format!("{topic}/bare"), &args).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        report(
            "rumqttc, acknowledged on receipt",
            received.load(Ordering::Relaxed),
            published,
            &args,
        );
        subscriber.abort();
    }

    // Eddy, with checkpoints: acknowledged once in its ingest log.
    let dir = std::env::temp_dir().join(format!("eddy-ingest-{run}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let query = dir.join("ingest.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (device_id TEXT, seq BIGINT, temp DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH (connector = 'mqtt', url = 'mqtt://{host}:{port}', topic = '{topic}/eddy/+', qos = 1,
        clean_session = false, client_id = 'ingest-eddy-{run}', protocol = '{}');
CREATE SINK out WITH (connector = 'file', path = '{}');
INSERT INTO out SELECT device_id, seq FROM readings WHERE temp > 1000;
",
            args.protocol,
            dir.join("out.jsonl").display()
        ),
    )?;
    let mut child = Killed(
        Command::new(&eddy)
            .args(["run", "--quiet", "--stats"])
            .arg(&query)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--checkpoint-interval", &args.checkpoint_interval])
            .env("EDDY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", eddy.display()))?,
    );
    let stderr = child.0.stderr.take().context("stderr")?;
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .context("eddy did not subscribe within 30 s")?;
        if line.contains("subscribed to") {
            break;
        }
    }
    let published = publish(&host, port, &format!("{topic}/eddy"), &args).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status();
    let _ = child.0.wait();
    let stats: Value = lines_rx
        .try_iter()
        .filter_map(|l| serde_json::from_str(&l).ok())
        .last()
        .context("eddy printed no --stats summary")?;
    let events = stats["events"].as_u64().unwrap_or(0);
    report(
        &format!(
            "eddy run, {} QoS 1, checkpoints every {}",
            args.protocol, args.checkpoint_interval
        ),
        events,
        published,
        &args,
    );
    println!(
        "  eddy: {} checkpoints, {} reconnects, peak RSS {} MB",
        stats["checkpoints"],
        stats["reconnects"],
        stats["peak_rss_bytes"].as_u64().unwrap_or(0) / 1_000_000
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn report(consumer: &str, received: u64, published: u64, args: &Args) {
    println!(
        "{consumer}: {received} of {published} received, {:.0} messages/s",
        received as f64 / args.seconds as f64
    );
}

/// Publishes readings on `prefix/<device>` from every publisher as fast as the broker takes them,
/// for `args.seconds`; returns how many the broker acknowledged.
async fn publish(host: &str, port: u16, prefix: &str, args: &Args) -> Result<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for p in 0..args.publishers {
        let mut options =
            MqttOptions::new(format!("ingest-pub-{}-{p}", std::process::id()), host, port);
        options.set_inflight(1000);
        let (client, mut events) = AsyncClient::new(options, 1000);
        let counted = Arc::clone(&acked);
        tokio::spawn(async move {
            while let Ok(event) = events.poll().await {
                if let Event::Incoming(Packet::PubAck(_)) = event {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let (stop, prefix) = (Arc::clone(&stop), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let device = seq % 100;
                let payload = format!(
                    r#"{{"device_id":"m{device}","seq":{seq},"temp":{},"ts":{}}}"#,
                    20 + seq % 30,
                    1_767_225_600_000u64 + seq
                );
                if client
                    .publish(
                        format!("{prefix}/m{device}"),
                        QoS::AtLeastOnce,
                        false,
                        payload,
                    )
                    .await
                    .is_err()
                {
                    break;
                }
                seq += 1;
            }
            let _ = client.disconnect().await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    Ok(acked.load(Ordering::Relaxed))
}
