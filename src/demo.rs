//! `eddy demo`: an embedded MQTT broker, simulated sensors publishing readings, the example queries
//! of `queries/` running against the broker as the rules of an `eddy serve` whose API it prints,
//! and the alerts they publish printed as readable lines.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use std::sync::Arc;

use eddy_connectors::mqtt::EmbeddedBroker;
use eddy_engine::options::Restriction;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::serve::auth::Tokens;
use crate::serve::{Access, Rules, serve_api};
use crate::status::Status;

/// The example queries the demo runs, built into the binary so `eddy demo` works from anywhere.
const QUERIES: [(&str, &str); 2] = [
    (
        "queries/overheat.sql",
        include_str!("../queries/overheat.sql"),
    ),
    ("queries/spikes.sql", include_str!("../queries/spikes.sql")),
];

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Number of simulated devices.
    #[arg(long, default_value_t = 50)]
    devices: usize,
    /// Readings per second per device.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
    /// No live status line on stderr.
    #[arg(long)]
    quiet: bool,
    /// Where the API listens (a free port if this one is taken).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: std::net::SocketAddr,
}

pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    if args.devices == 0 || !args.rate.is_finite() || args.rate <= 0.0 {
        anyhow::bail!("--devices and --rate must be positive");
    }
    let broker = EmbeddedBroker::start()
        .await
        .context("cannot start the embedded MQTT broker")?;
    let url = broker.url();
    info!("embedded MQTT broker at {url}");
    // The example queries run as the service's rules, their ${MQTT_URL} the embedded broker.
    let access = Access {
        restriction: Restriction {
            env: vec!["MQTT_URL".to_string()],
            paths: Vec::new(),
        },
        env: Arc::new({
            let url = url.clone();
            move |name: &str| (name == "MQTT_URL").then(|| url.clone())
        }),
    };
    let state = std::env::temp_dir().join(format!("eddy-demo-{}", std::process::id()));
    let rules = Rules::start(state.clone(), None, access, Duration::from_secs(10)).await?;
    for (file, sql) in QUERIES {
        let name = rule_name(file);
        if let Err(refused) = rules.create(name, sql, "demo").await {
            eprintln!("{file}: {refused:?}");
            return Ok(ExitCode::FAILURE);
        }
    }
    let listener = match tokio::net::TcpListener::bind(args.http).await {
        Ok(l) => l,
        Err(e) => {
            warn!("cannot listen on {}: {e}; taking a free port", args.http);
            tokio::net::TcpListener::bind((args.http.ip(), 0)).await?
        }
    };
    let api = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_api(
        listener,
        Arc::clone(&rules),
        Tokens::load(None, None)?,
        shutdown.clone(),
    ));
    let printer = tokio::spawn(print_alerts(broker.port(), shutdown.clone()));
    let simulator = tokio::spawn(simulate(
        broker.port(),
        args.devices,
        args.rate,
        shutdown.clone(),
    ));
    eprintln!(
        "Eddy demo: {} devices at {} Hz on {url}; rules {} ({api}/api/rules, live alerts at {api}/api/alerts/stream). Alerts appear below; Ctrl-C stops.",
        args.devices,
        args.rate,
        QUERIES.map(|q| rule_name(q.0)).join(", ")
    );
    let first = rules.metrics().await.into_iter().find_map(|r| r.engine);
    let status = first.map(|m| Status::start(m, args.quiet));
    match args.seconds {
        Some(s) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(s)) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    shutdown.cancel();
    let failed: Vec<String> = rules
        .list()
        .await
        .into_iter()
        .filter_map(|r| r.error.map(|e| format!("rule {}: {e}", r.name)))
        .collect();
    rules.stop_all().await;
    if let Some(status) = status {
        status.finish(false);
    }
    let _ = simulator.await;
    let _ = printer.await;
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&state);
    for f in &failed {
        eprintln!("error: {f}");
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `queries/overheat.sql` -> `overheat`.
fn rule_name(file: &str) -> &str {
    let base = file.rsplit('/').next().unwrap_or(file);
    base.strip_suffix(".sql").unwrap_or(base)
}

/// Subscribes to `alerts/#` and prints each alert as one readable line on stdout.
async fn print_alerts(port: u16, shutdown: CancellationToken) {
    let mut options = MqttOptions::new("eddy-demo-alerts", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 64);
    if let Err(e) = client.subscribe("alerts/#", QoS::AtLeastOnce).await {
        warn!("demo: cannot subscribe to alerts: {e}");
        return;
    }
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            e = events.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                use std::io::Write;
                let line = alert_line(&p.topic, &p.payload);
                if writeln!(std::io::stdout().lock(), "{line}").is_err() {
                    // Nobody reads the alerts any more (`eddy demo | head`): stop.
                    shutdown.cancel();
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                warn!("demo: alert subscriber: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// `12:00:10  overheat  machine-07  avg_temp=81.2  max_temp=88.0  window 11:59:10-12:00:10`
fn alert_line(topic: &str, payload: &[u8]) -> String {
    let kind = topic.split('/').nth(1).unwrap_or(topic);
    let Ok(serde_json::Value::Object(fields)) =
        serde_json::from_slice::<serde_json::Value>(payload)
    else {
        return format!("{topic}  {}", String::from_utf8_lossy(payload));
    };
    let clock = |key: &str| {
        fields
            .get(key)
            .and_then(|v| v.as_str())
            .and_then(|s| s.get(11..19))
            .unwrap_or("?")
            .to_string()
    };
    let mut line = format!(
        "{}  {kind:<9} {}",
        chrono::Local::now().format("%H:%M:%S"),
        fields
            .get("device_id")
            .and_then(|v| v.as_str())
            .unwrap_or("-")
    );
    for (k, v) in &fields {
        if matches!(k.as_str(), "device_id" | "window_start" | "window_end") {
            continue;
        }
        let value = match v.as_f64() {
            Some(f) if v.is_f64() => format!("{f:.1}"),
            _ => v.to_string(),
        };
        line.push_str(&format!("  {k}={value}"));
    }
    line.push_str(&format!(
        "  window {}-{} UTC",
        clock("window_start"),
        clock("window_end")
    ));
    line
}

/// A small deterministic random generator (xorshift), enough for simulated noise.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Machine {
    id: String,
    base: f64,
    heat: f64,
    /// Readings left in the current overheating episode.
    overheating: u32,
}

/// Publishes readings `{"device_id", "temp", "humidity", "ts"}` to `factory/<device>/telemetry`.
/// Machines run at 55-65 °C; now and then one overheats (up to ~90 °C for a few minutes), and
/// rarely a reading spikes by 25 °C. Two machines start hot, so alerts come within seconds.
async fn simulate(port: u16, devices: usize, rate: f64, shutdown: CancellationToken) {
    let mut options = MqttOptions::new("eddy-demo-sensors", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(1000);
    let (client, mut events) = AsyncClient::new(options, devices.max(64) * 2);
    tokio::spawn(async move {
        loop {
            if events.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let mut noise = Noise(0x5eed_1234_abcd_0042);
    let per_second = rate * devices as f64;
    let episode = (90.0 * rate) as u32;
    let mut machines: Vec<Machine> = (0..devices)
        .map(|i| Machine {
            id: format!("machine-{i:02}"),
            base: 55.0 + 10.0 * noise.next(),
            heat: if i < 2 { 30.0 } else { 0.0 },
            overheating: if i < 2 { episode } else { 0 },
        })
        .collect();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for m in &mut machines {
            // About one new overheating machine every 30 seconds across the floor.
            if m.overheating == 0 && noise.next() < 1.0 / (30.0 * per_second) {
                m.overheating = episode;
            }
            let target = if m.overheating > 0 { 30.0 } else { 0.0 };
            // Machines heat up and cool down over about half a minute.
            m.heat += (target - m.heat) * (1.0 / (30.0 * rate)).min(1.0);
            m.overheating = m.overheating.saturating_sub(1);
            let spike = if noise.next() < 1.0 / (60.0 * per_second) {
                25.0
            } else {
                0.0
            };
            let temp = m.base + m.heat + spike + 3.0 * (noise.next() - 0.5);
            let humidity = 40.0 + 10.0 * noise.next();
            let payload = format!(
                r#"{{"device_id":"{}","temp":{temp:.2},"humidity":{humidity:.1},"ts":"{ts}"}}"#,
                m.id
            );
            let topic = format!("factory/{}/telemetry", m.id);
            if client
                .publish(topic, QoS::AtMostOnce, false, payload.into_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    }
    let _ = client.disconnect().await;
}
