//! `eddy serve` under load: how fast one MQTT source is read when 1 rule and when many rules
//! read it (through the one shared connection), how long a rule takes from its registration to
//! its first alert, and how fast the API answers while readings flow.
//!
//!     cargo build --release --workspace --bins
//!     cargo run --release -p eddy-benches --bin serve -- --rules 100 --readings 200000
//!
//! Readings go through an embedded MQTT broker (or the one given with `--broker`) at QoS 1 to a
//! catalog source with a kept session, so the broker drops none.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use eddy_benches::{Killed, now_ms};
use eddy_connectors::mqtt::EmbeddedBroker;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};

/// The watermark bound of the readings: a window closes this long after its end.
const BOUND_MS: i64 = 100;

#[derive(Parser)]
#[command(
    about = "Measures `eddy serve`: shared-source ingest, registration to first alert, API latency"
)]
struct Args {
    /// Rules reading the one source in the fan-out measurement (after a run with one rule).
    #[arg(long, default_value_t = 100)]
    rules: usize,
    /// Readings published in each ingest measurement, as fast as the publisher goes.
    #[arg(long, default_value_t = 200_000)]
    readings: u64,
    /// Readings per second while the API and registrations are measured.
    #[arg(long, default_value_t = 5_000)]
    rate: u32,
    /// Registrations measured.
    #[arg(long, default_value_t = 20)]
    registrations: usize,
    /// API requests measured.
    #[arg(long, default_value_t = 500)]
    requests: usize,
    /// Rules left reading while the API and registrations are measured.
    #[arg(long, default_value_t = 10)]
    keep_rules: usize,
    /// The eddy binary (default: `eddy` next to this program).
    #[arg(long)]
    eddy: Option<PathBuf>,
    /// An MQTT broker to use (host:port) instead of the embedded one.
    #[arg(long)]
    broker: Option<String>,
}

struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn create(&self, name: &str, sql: &str) -> Result<()> {
        self.call(
            reqwest::Method::POST,
            "/api/rules",
            Some(json!({"name": name, "sql": sql})),
        )
        .await
        .map(drop)
    }

    /// The fewest events any rule has read.
    async fn least_read(&self) -> Result<u64> {
        let rules = self.call(reqwest::Method::GET, "/api/rules", None).await?;
        Ok(rules
            .as_array()
            .context("a list of rules")?
            .iter()
            .map(|r| r["counters"]["events_in"].as_u64().unwrap_or(0))
            .min()
            .unwrap_or(0))
    }
}

/// Readings of 100 devices, stamped with the clock, to `bench-serve-RUN/DEVICE` at QoS 1.
struct Publisher {
    client: AsyncClient,
    run: u32,
    published: u64,
}

impl Publisher {
    fn connect(role: &str, host: &str, port: u16, run: u32) -> Self {
        let mut options = MqttOptions::new(format!("bench-serve-{role}-{run}"), host, port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_inflight(1000);
        let (client, mut events) = AsyncClient::new(options, 10_000);
        tokio::spawn(async move { while events.poll().await.is_ok() {} });
        Self {
            client,
            run,
            published: 0,
        }
    }

    async fn publish(&mut self, n: u64) -> Result<()> {
        for _ in 0..n {
            let device = self.published % 100;
            let payload = format!(
                r#"{{"device_id":"machine-{device:04}","temp":{},"ts":{}}}"#,
                20 + device % 50,
                now_ms()
            );
            self.client
                .publish(
                    format!("bench-serve-{}/{device}", self.run),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await?;
            self.published += 1;
        }
        Ok(())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
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
    let run = std::process::id();
    let dir = std::env::temp_dir().join(format!("eddy-serve-bench-{run}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("catalog.sql"),
        format!(
            "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '{BOUND_MS}' MILLISECOND)
  WITH (connector = 'mqtt', url = 'mqtt://{host}:{port}', topic = 'bench-serve-{run}/+', linger = '5ms',
        qos = 1, client_id = 'bench-serve-{run}', clean_session = 'false');
CREATE SINK alerts WITH (connector = 'file', path = 'alerts.jsonl');
"
        ),
    )?;
    let http_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(&eddy)
        .current_dir(&dir)
        .args(["serve", "catalog.sql", "--state-dir", "state"])
        .args(["--http", &format!("127.0.0.1:{http_port}")])
        .env("EDDY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {}", eddy.display()))?;
    let _running = Killed(child);
    let api = Api {
        http: reqwest::Client::new(),
        url: format!("http://127.0.0.1:{http_port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while api
        .call(reqwest::Method::GET, "/health", None)
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("eddy serve did not answer within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut publisher = Publisher::connect("pub", &host, port, run);

    // Ingest with 1 rule, then with `rules` rules over the same source: readings as fast as the
    // publisher goes, timed until every rule has read them all.
    let mut rates = Vec::new();
    let mut made = 0;
    for wanted in [1, args.rules.max(1)] {
        while made < wanted {
            api.create(
                &format!("quiet-{made}"),
                &format!(
                    "INSERT INTO alerts SELECT device_id, temp FROM readings WHERE temp > {};",
                    1000 + made
                ),
            )
            .await?;
            made += 1;
        }
        // A reading each rule takes first: every rule is reading before the clock starts.
        let before = publisher.published;
        publisher.publish(1).await?;
        while api.least_read().await? < 1 {
            publisher.publish(1).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let base = api.least_read().await?;
        let target = base + args.readings;
        let started = Instant::now();
        publisher.publish(args.readings).await?;
        let published_in = started.elapsed();
        while api.least_read().await? < target {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = started.elapsed();
        let rate = args.readings as f64 / took.as_secs_f64();
        println!(
            "{wanted:>4} rule(s) over one source: {} readings in {:.2} s (published in {:.2} s): {:.0} readings/s, each read by every rule ({} published before the clock started)",
            args.readings,
            took.as_secs_f64(),
            published_in.as_secs_f64(),
            rate,
            publisher.published - before - args.readings
        );
        rates.push(rate);
    }
    if let [one, many] = rates[..] {
        println!(
            "{} rules read at {:.0}% of one rule's rate",
            args.rules,
            100.0 * many / one
        );
    }

    // The API and registrations, with `keep_rules` rules reading readings that flow at `rate`.
    for i in args.keep_rules.max(1)..made {
        api.call(
            reqwest::Method::DELETE,
            &format!("/api/rules/quiet-{i}"),
            None,
        )
        .await
        .ok();
    }
    let kept = args.keep_rules.max(1).min(made);
    let mut steady = Publisher::connect("steady", &host, port, run);
    let rate = args.rate;
    let per_tick = u64::from(rate / 100).max(1);
    let flowing = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tick.tick().await;
            if steady.publish(per_tick).await.is_err() {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (read_before, clock) = (api.least_read().await?, Instant::now());

    let mut answers = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        let started = Instant::now();
        api.call(reqwest::Method::GET, "/api/rules", None).await?;
        answers.push(started.elapsed().as_secs_f64() * 1000.0);
        // About 100 requests a second, as dashboards and scrapers ask.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let read = (api.least_read().await? - read_before) as f64 / clock.elapsed().as_secs_f64();
    answers.sort_by(f64::total_cmp);
    println!(
        "GET /api/rules ({kept} rules, each reading {read:.0} readings/s of the {rate} published a second): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests)",
        percentile(&answers, 0.5),
        percentile(&answers, 0.99),
        answers[answers.len() - 1],
        args.requests
    );

    // A windowed rule registered while readings flow: its first alert, on the live stream, timed
    // from the end of its window plus the watermark bound (when the window closes), and the
    // POST's own time.
    let mut created = Vec::new();
    let mut after_close = Vec::new();
    for i in 0..args.registrations {
        let name = format!("new-{i}");
        let mut stream = api
            .http
            .get(format!("{}/api/alerts/stream?rule={name}", api.url))
            .send()
            .await?;
        let started = Instant::now();
        api.create(
            &name,
            "INSERT INTO alerts SELECT device_id, window_start, window_end, count(*) AS n
             FROM TUMBLE(readings, ts, INTERVAL '1' SECOND) GROUP BY device_id, window_start, window_end;",
        )
        .await?;
        created.push(started.elapsed().as_secs_f64() * 1000.0);
        let mut text = String::new();
        let end = loop {
            let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
                .await
                .context("no alert within 10 s")??
                .context("the stream ended")?;
            let arrived = now_ms();
            text.push_str(&String::from_utf8_lossy(&chunk));
            let first = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .find_map(|a| {
                    a["row"]["window_end"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                });
            if let Some(end) = first {
                break (arrived, end.timestamp_millis());
            }
        };
        after_close.push((end.0 - end.1 - BOUND_MS) as f64);
        api.call(reqwest::Method::DELETE, &format!("/api/rules/{name}"), None)
            .await
            .ok();
    }
    flowing.abort();
    created.sort_by(f64::total_cmp);
    after_close.sort_by(f64::total_cmp);
    println!(
        "a windowed rule registered at {rate} readings/s: POST answered p50 {:.1} ms, max {:.1} ms; its first alert on the live stream after its window closed (window end + {BOUND_MS} ms bound): p50 {:.0} ms, max {:.0} ms ({} registrations)",
        percentile(&created, 0.5),
        created[created.len() - 1],
        percentile(&after_close, 0.5),
        after_close[after_close.len() - 1],
        args.registrations
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
