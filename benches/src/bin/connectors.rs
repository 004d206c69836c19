//! Throughput of Eddy's connectors against the real services on this machine.
//!
//! Sinks: `eddy run` writes N rows of a file (each row an alert) to the sink and exits once every
//! row is delivered; alerts/s is N over the run's wall time, the file sink being the baseline.
//! `--batch 1` makes every write one alert (batching off); the default hands the sinks batches of
//! up to 4,096. Sources: a backlog of N readings is put in the service first, then `eddy run`
//! reads it into a file; readings/s is N over the time from the source being ready to the last
//! row written, MQTT (a persistent session on a Mosquitto this program starts, which queues the
//! whole backlog) the comparison.
//!
//!     cargo build --release --workspace --bins
//!     target/release/connectors sink webhook --rows 100000
//!     target/release/connectors source nats --rows 200000
//!
//! Services: PostgreSQL :5432 (database test), RabbitMQ :5672, NATS :4222, Mosquitto :1883 (the
//! MQTT sink; the MQTT source gets a Mosquitto of its own),
//! a Kafka-protocol broker given with `--kafka host:port` (tansu, as the tests start it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    about = "Measures Eddy's sinks (alerts/s) and sources (readings/s) against real services"
)]
struct Args {
    #[command(subcommand)]
    what: What,
    /// Rows written or readings read.
    #[arg(long, default_value_t = 100_000, global = true)]
    rows: usize,
    /// The eddy binary (default: `eddy` next to this program).
    #[arg(long, global = true)]
    eddy: Option<PathBuf>,
    /// A Kafka-protocol broker, host:port.
    #[arg(long, global = true)]
    kafka: Option<String>,
}

#[derive(Subcommand)]
enum What {
    /// Alerts/s into one sink.
    Sink {
        kind: SinkKind,
        /// Alerts per write: 1 turns batching off (and, for the webhook, one alert a request).
        #[arg(long, default_value_t = 4096)]
        batch: usize,
    },
    /// Readings/s out of one source, from a backlog.
    Source { kind: SourceKind },
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum SinkKind {
    File,
    Webhook,
    Postgres,
    Nats,
    Jetstream,
    Amqp,
    Kafka,
    Mqtt,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum SourceKind {
    Mqtt,
    Nats,
    Amqp,
    Kafka,
}

/// A Mosquitto of this run's own (Debian's build) that queues a backlog of any length for a
/// persistent session (`max_queued_messages 0`; the shipped default keeps 1,000).
struct PrivateMosquitto {
    child: std::process::Child,
    port: u16,
}

impl PrivateMosquitto {
    fn start(dir: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\npersistence false\n"
            ),
        )?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("mosquitto (Debian's package) must be installed")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("mosquitto did not listen on port {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, port })
    }
}

impl Drop for PrivateMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates `name` with one partition (Eddy's Kafka sink does not create topics).
async fn create_topic(servers: &str, name: &str) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(name, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    for result in results {
        result.map_err(|(topic, e)| anyhow::anyhow!("cannot create topic {topic}: {e}"))?;
    }
    Ok(())
}

fn reading(i: usize) -> String {
    format!(
        r#"{{"device_id":"machine-{:04}","temp":{}.5,"ts":{}}}"#,
        i % 100,
        20 + i % 50,
        1_767_225_600_000i64 + i as i64
    )
}

const SCHEMA: &str = "device_id TEXT, temp DOUBLE, ts TIMESTAMP";

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let eddy = eddy_benches::eddy_binary(args.eddy.as_deref())?;
    let dir = std::env::temp_dir().join(format!("eddy-connectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = match args.what {
        What::Sink { kind, batch } => sink(&eddy, &dir, kind, batch, args.rows, args.kafka).await,
        What::Source { kind } => source(&eddy, &dir, kind, args.rows, args.kafka).await,
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn sink(
    eddy: &Path,
    dir: &Path,
    kind: SinkKind,
    batch: usize,
    rows: usize,
    kafka: Option<String>,
) -> Result<()> {
    let input = dir.join("readings.jsonl");
    let lines: Vec<String> = (0..rows).map(reading).collect();
    std::fs::write(&input, lines.join("\n") + "\n")?;
    let run = std::process::id();
    let received = Arc::new(AtomicU64::new(0));
    let options = match kind {
        SinkKind::File => format!(
            "connector = 'file', path = '{}'",
            dir.join("out.jsonl").display()
        ),
        SinkKind::Webhook => {
            let url = webhook_receiver(Arc::clone(&received)).await?;
            format!(
                "connector = 'webhook', url = '{url}', batch_size = '{}', linger = '5ms'",
                batch.min(500)
            )
        }
        SinkKind::Postgres => format!(
            "connector = 'postgres', url = 'postgres://127.0.0.1:5432/test', table = 'bench_{run}', create_table = 'true'"
        ),
        SinkKind::Nats => format!(
            "connector = 'nats', url = 'nats://127.0.0.1:4222', subject = 'bench.{run}.{{device_id}}'"
        ),
        SinkKind::Jetstream => {
            let client = async_nats::connect("127.0.0.1:4222").await?;
            let js = async_nats::jetstream::new(client);
            let _ = js.delete_stream(format!("BENCH{run}")).await;
            js.create_stream(async_nats::jetstream::stream::Config {
                name: format!("BENCH{run}"),
                subjects: vec![format!("bench.{run}.>")],
                ..Default::default()
            })
            .await?;
            format!(
                "connector = 'nats', url = 'nats://127.0.0.1:4222', jetstream = 'true', subject = 'bench.{run}.{{device_id}}'"
            )
        }
        SinkKind::Amqp => format!(
            "connector = 'amqp', url = 'amqp://guest:guest@127.0.0.1:5672/%2f', exchange = 'bench.{run}', declare = 'true', routing_key = 'alerts.{{device_id}}'"
        ),
        SinkKind::Kafka => {
            let servers = kafka.context("--kafka host:port is needed")?;
            create_topic(&servers, &format!("bench-{run}")).await?;
            format!(
                "connector = 'kafka', bootstrap_servers = '{servers}', topic = 'bench-{run}', key = 'device_id'"
            )
        }
        SinkKind::Mqtt => format!(
            "connector = 'mqtt', url = 'mqtt://127.0.0.1:1883', topic = 'bench/{run}/{{device_id}}', qos = 1"
        ),
    };
    let query = dir.join("q.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings ({SCHEMA}) WITH (connector = 'file', path = '{}', batch_size = '{batch}');
CREATE SINK out WITH ({options});
INSERT INTO out SELECT device_id, temp, ts FROM readings;",
            input.display()
        ),
    )?;
    let started = Instant::now();
    let status = Command::new(eddy)
        .args(["run", "--quiet"])
        .arg(&query)
        .stdout(Stdio::null())
        .status()
        .context("eddy runs")?;
    let elapsed = started.elapsed();
    if !status.success() {
        bail!("eddy failed");
    }
    if kind == SinkKind::Webhook {
        let got = received.load(Ordering::Relaxed);
        if got != rows as u64 {
            bail!("the webhook received {got} alerts, not {rows}");
        }
    }
    if kind == SinkKind::Postgres {
        let (client, connection) =
            tokio_postgres::connect("postgres://127.0.0.1:5432/test", tokio_postgres::NoTls)
                .await?;
        tokio::spawn(connection);
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM bench_{run}"), &[])
            .await?
            .get(0);
        client
            .batch_execute(&format!("DROP TABLE bench_{run}"))
            .await?;
        if n != rows as i64 {
            bail!("the table holds {n} alerts, not {rows}");
        }
    }
    if kind == SinkKind::Jetstream {
        let client = async_nats::connect("127.0.0.1:4222").await?;
        let _ = async_nats::jetstream::new(client)
            .delete_stream(format!("BENCH{run}"))
            .await;
    }
    println!(
        "sink {:?}, {} alerts per write: {rows} alerts in {:.2} s, {:.0} alerts/s",
        kind_name(kind),
        batch,
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

fn kind_name(kind: SinkKind) -> &'static str {
    match kind {
        SinkKind::File => "file",
        SinkKind::Webhook => "webhook",
        SinkKind::Postgres => "postgres",
        SinkKind::Nats => "nats",
        SinkKind::Jetstream => "nats jetstream",
        SinkKind::Amqp => "amqp",
        SinkKind::Kafka => "kafka",
        SinkKind::Mqtt => "mqtt qos 1",
    }
}

/// An HTTP endpoint on a free port counting the alerts it receives (objects or arrays).
async fn webhook_receiver(received: Arc<AtomicU64>) -> Result<String> {
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/alerts", listener.local_addr()?);
    let app = axum::Router::new().route(
        "/alerts",
        post(move |body: axum::body::Bytes| {
            let received = Arc::clone(&received);
            async move {
                let n = match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(serde_json::Value::Array(a)) => a.len() as u64,
                    Ok(_) => 1,
                    Err(_) => 0,
                };
                received.fetch_add(n, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

async fn source(
    eddy: &Path,
    dir: &Path,
    kind: SourceKind,
    rows: usize,
    kafka: Option<String>,
) -> Result<()> {
    let run = std::process::id();
    let mut _broker = None;
    let (options, ready) = match kind {
        SourceKind::Mqtt => {
            let broker = PrivateMosquitto::start(dir)?;
            let port = broker.port;
            _broker = Some(broker);
            // A persistent session made first, so that Mosquitto queues the backlog for it.
            let client_id = format!("bench-source-{run}");
            let mut o = rumqttc::MqttOptions::new(&client_id, "127.0.0.1", port);
            o.set_clean_session(false);
            let (c, mut events) = rumqttc::AsyncClient::new(o, 10);
            c.subscribe(format!("bench/{run}/#"), rumqttc::QoS::AtLeastOnce)
                .await?;
            loop {
                if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) = events.poll().await? {
                    break;
                }
            }
            c.disconnect().await?;
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while events.poll().await.is_ok() {}
            })
            .await;
            let mut o = rumqttc::MqttOptions::new(format!("bench-pub-{run}"), "127.0.0.1", port);
            o.set_inflight(1000);
            let (p, mut events) = rumqttc::AsyncClient::new(o, 10_000);
            let acked = Arc::new(AtomicU64::new(0));
            let counter = Arc::clone(&acked);
            tokio::spawn(async move {
                while let Ok(e) = events.poll().await {
                    if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) = e {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            for i in 0..rows {
                p.publish(
                    format!("bench/{run}/r"),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    reading(i),
                )
                .await?;
            }
            while acked.load(Ordering::Relaxed) < rows as u64 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (
                format!(
                    "connector = 'mqtt', url = 'mqtt://127.0.0.1:{port}', topic = 'bench/{run}/#', qos = 1, clean_session = 'false', client_id = '{client_id}'"
                ),
                "subscribed to",
            )
        }
        SourceKind::Nats => {
            let client = async_nats::connect("127.0.0.1:4222").await?;
            let js = async_nats::jetstream::new(client);
            let _ = js.delete_stream(format!("BENCHIN{run}")).await;
            js.create_stream(async_nats::jetstream::stream::Config {
                name: format!("BENCHIN{run}"),
                subjects: vec![format!("benchin.{run}.>")],
                ..Default::default()
            })
            .await?;
            let mut acks = Vec::with_capacity(rows);
            for i in 0..rows {
                acks.push(
                    js.publish(format!("benchin.{run}.r"), reading(i).into())
                        .await?,
                );
                if acks.len() >= 5_000 {
                    for a in acks.drain(..) {
                        a.await?;
                    }
                }
            }
            for a in acks {
                a.await?;
            }
            (
                format!(
                    "connector = 'nats', url = 'nats://127.0.0.1:4222', stream = 'BENCHIN{run}'"
                ),
                "reading stream",
            )
        }
        SourceKind::Amqp => {
            use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
            let connection = lapin::Connection::connect(
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                lapin::ConnectionProperties::default(),
            )
            .await?;
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            let queue = format!("bench-in-{run}");
            channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await?;
            let mut confirms = Vec::new();
            for i in 0..rows {
                confirms.push(
                    channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            BasicPublishOptions::default(),
                            reading(i).as_bytes(),
                            lapin::BasicProperties::default().with_delivery_mode(2),
                        )
                        .await?,
                );
                if confirms.len() >= 5_000 {
                    for c in confirms.drain(..) {
                        c.await?;
                    }
                }
            }
            for c in confirms {
                c.await?;
            }
            (
                format!(
                    "connector = 'amqp', url = 'amqp://guest:guest@127.0.0.1:5672/%2f', queue = '{queue}'"
                ),
                "consuming queue",
            )
        }
        SourceKind::Kafka => {
            use rdkafka::producer::{FutureProducer, FutureRecord};
            let servers = kafka.context("--kafka host:port is needed")?;
            let producer: FutureProducer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .set("linger.ms", "5")
                .create()?;
            let topic = format!("bench-in-{run}");
            create_topic(&servers, &topic).await?;
            let mut deliveries = Vec::new();
            for i in 0..rows {
                let payload = reading(i);
                let record: FutureRecord<'_, str, str> = FutureRecord::to(&topic).payload(&payload);
                deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
                if deliveries.len() >= 5_000 {
                    for d in deliveries.drain(..) {
                        let _ = d.await?;
                    }
                }
            }
            for d in deliveries {
                let _ = d.await?;
            }
            (
                format!("connector = 'kafka', bootstrap_servers = '{servers}', topic = '{topic}'"),
                "assigned",
            )
        }
    };
    let out = dir.join("out.jsonl");
    let query = dir.join("q.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings ({SCHEMA}) WITH ({options});
CREATE SINK out WITH (connector = 'file', path = '{}');
INSERT INTO out SELECT device_id, temp, ts FROM readings;",
            out.display()
        ),
    )?;
    let state = dir.join("state");
    let mut child = Command::new(eddy)
        .args(["run", "--quiet", "--state-dir"])
        .arg(&state)
        .arg(&query)
        .env("EDDY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("eddy runs")?;
    let stderr = child.stderr.take().context("stderr")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains(ready) {
                let _ = ready_tx.send(Instant::now());
            }
        }
    });
    let started = ready_rx
        .recv_timeout(Duration::from_secs(60))
        .context("the source did not say it was ready")?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut count = 0;
    while count < rows && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        count = std::fs::read(&out).map(|b| bytecount(&b)).unwrap_or(0);
    }
    let elapsed = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    if count < rows {
        bail!("only {count} of {rows} readings read");
    }
    if kind == SourceKind::Nats {
        let client = async_nats::connect("127.0.0.1:4222").await?;
        let _ = async_nats::jetstream::new(client)
            .delete_stream(format!("BENCHIN{run}"))
            .await;
    }
    if kind == SourceKind::Amqp
        && let Ok(connection) = lapin::Connection::connect(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            lapin::ConnectionProperties::default(),
        )
        .await
        && let Ok(channel) = connection.create_channel().await
    {
        let _ = channel
            .queue_delete(
                format!("bench-in-{run}").as_str().into(),
                Default::default(),
            )
            .await;
    }
    println!(
        "source {}: {rows} readings of a backlog in {:.2} s, {:.0} readings/s",
        match kind {
            SourceKind::Mqtt => "mqtt qos 1 (ingest log)",
            SourceKind::Nats => "nats jetstream",
            SourceKind::Amqp => "amqp (ingest log)",
            SourceKind::Kafka => "kafka",
        },
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

fn bytecount(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}
