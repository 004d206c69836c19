//! The AMQP connector against the machine's RabbitMQ (127.0.0.1:5672, guest/guest; `.ci/run`
//! starts it when it is down). Readings consumed from a queue bound to an exchange become windows
//! whose alerts go to another exchange (routing keys, headers, message ids, persistent), checked
//! against counts computed here; a bad message is dead-lettered and acknowledged; Eddy killed with
//! SIGKILL mid-stream and started again (`--state-dir`) gives every window exactly as an
//! uninterrupted run; the source's and the sink's connections closed by the broker while readings
//! and alerts flow lose nothing and count nothing twice. Each test uses exchanges and queues of
//! its own, named after the process and the test.

mod common;

use std::time::{Duration, Instant};

use common::windows::{
    QUERY_WINDOWS, closing, expected_windows, read_alerts, readings, windows_of,
};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
fn id(test: &str) -> String {
    format!("{test}{}", std::process::id())
}

async fn channel() -> (Connection, Channel) {
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!("RabbitMQ must listen on 127.0.0.1:5672 (rabbitmq-server -detached): {e}")
        });
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    (connection, channel)
}

async fn topic_exchange(channel: &Channel, name: &str) {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange declared");
}

/// A queue of the test's bound to `exchange` by `key`, emptied.
async fn bound_queue(channel: &Channel, queue: &str, exchange: &str, key: &str) {
    let _ = channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue declared");
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue bound");
}

async fn publish(channel: &Channel, exchange: &str, key: &str, payloads: Vec<String>) {
    let mut confirms = Vec::new();
    for p in payloads {
        confirms.push(
            channel
                .basic_publish(
                    exchange.into(),
                    key.into(),
                    BasicPublishOptions::default(),
                    p.as_bytes(),
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .expect("published"),
        );
    }
    for c in confirms {
        c.await.expect("confirmed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readings_from_a_queue_become_alerts_on_an_exchange() {
    let id = id("ex");
    let (_connection, channel) = channel().await;
    let readings_exchange = format!("eddy.readings.{id}");
    let alerts_exchange = format!("eddy.alerts.{id}");
    let queue = format!("eddy-readings-{id}");
    let collected = format!("eddy-collected-{id}");
    topic_exchange(&channel, &alerts_exchange).await;
    bound_queue(&channel, &collected, &alerts_exchange, "alerts.#").await;
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let query = dir.path().join("q.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (routing_key TEXT, device_id TEXT, temp BIGINT, ts TIMESTAMP,
                                     WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'amqp', url = '{URL}', queue = '{queue}',
                     exchange = '{readings_exchange}', binding_key = 'plant.#',
                     dead_letter = '{}');
             CREATE SINK alerts WITH (connector = 'amqp', url = '{URL}',
                                      exchange = '{alerts_exchange}', declare = 'true',
                                      routing_key = 'alerts.{{device_id}}',
                                      header_columns = 'device_id, n', alert_id = 'true');
             {QUERY_WINDOWS}",
            dir.path().join("dead.jsonl").display()
        ),
    )
    .expect("query written");
    let eddy = common::run_until_logged(&query, "consuming queue");
    for s in 0..60 {
        publish(&channel, &readings_exchange, "plant.hall1", readings(s)).await;
        if s == 30 {
            publish(
                &channel,
                &readings_exchange,
                "plant.hall1",
                vec!["{\"device_id\": \"m0\", \"temp\": \"hot\"".into()],
            )
            .await;
        }
    }
    // Not bound: never read.
    publish(&channel, &readings_exchange, "office.x", readings(5)).await;
    publish(
        &channel,
        &readings_exchange,
        "plant.hall1",
        vec![closing(0, 100)],
    )
    .await;

    let mut consumer = channel
        .basic_consume(
            collected.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consuming");
    let mut alerts = Vec::new();
    while alerts.len() < 24 {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("24 alerts within 30 s")
            .expect("consumer open")
            .expect("delivery");
        let alert: Value = serde_json::from_slice(&d.data).expect("alert is JSON");
        let device = alert["device_id"].as_str().expect("device").to_string();
        assert_eq!(d.routing_key.as_str(), format!("alerts.{device}"));
        let headers = d.properties.headers().clone().expect("headers");
        let header = |name: &str| match headers.inner().get(name) {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("header {name}: {other:?}"),
        };
        assert_eq!(header("device_id"), device);
        assert_eq!(header("n"), alert["n"].to_string());
        assert_eq!(
            d.properties.message_id().as_ref().map(|m| m.to_string()),
            alert["alert_id"].as_str().map(str::to_string)
        );
        assert_eq!(*d.properties.delivery_mode(), Some(2), "persistent");
        d.ack(BasicAckOptions::default()).await.expect("acked");
        alerts.push(alert);
    }
    drop(eddy);
    assert_eq!(windows_of(&alerts), expected_windows(60));
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).expect("dead letters");
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(
        dead.contains("hot") && dead.contains("plant.hall1"),
        "{dead}"
    );
    for q in [&queue, &collected] {
        let _ = channel
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}

/// The query of the fault tests: readings from `queue` (bound to `exchange`) through a source
/// named `source`, windows into the sink `sink` made `WITH (sink_options)`. The names are the
/// connections' names at the broker.
fn fault_query(
    dir: &std::path::Path,
    queue: &str,
    exchange: &str,
    source: &str,
    sink: &str,
    sink_options: &str,
) -> std::path::PathBuf {
    let query = dir.join("q.sql");
    let windows = QUERY_WINDOWS
        .replace("INSERT INTO alerts", &format!("INSERT INTO {sink}"))
        .replace("TUMBLE(readings,", &format!("TUMBLE({source},"));
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE {source} (device_id TEXT, temp BIGINT, ts TIMESTAMP,
                                     WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'amqp', url = '{URL}', queue = '{queue}',
                     exchange = '{exchange}', binding_key = 'plant.#', prefetch = '200');
             CREATE SINK {sink} WITH ({sink_options});
             {windows}"
        ),
    )
    .expect("query written");
    query
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_and_restarted_eddy_counts_every_reading_once() {
    let id = id("kill");
    // Two busy processes beside it: the kills come while every process competes for the cores.
    let _load = common::CpuLoad::start();
    let (_connection, channel) = channel().await;
    let exchange = format!("eddy.readings.{id}");
    let queue = format!("eddy-readings-{id}");
    topic_exchange(&channel, &exchange).await;
    bound_queue(&channel, &queue, &exchange, "plant.#").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("alerts.jsonl");
    let query = fault_query(
        dir.path(),
        &queue,
        &exchange,
        "readings",
        "alerts",
        &format!(
            "connector = 'file', path = '{}', alert_id = 'true'",
            out.display()
        ),
    );
    let state = dir.path().join("state");
    let args = [
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--checkpoint-interval",
        "300ms",
    ];
    let mut eddy = Some(common::run_with_until_logged(
        &query,
        &args,
        "consuming queue",
    ));
    // 600 seconds of readings, 2,400 messages, published over about 3 s; killed twice.
    for s in 0..600 {
        publish(&channel, &exchange, "plant.hall1", readings(s)).await;
        if s % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if s == 200 || s == 400 {
            drop(eddy.take());
            eddy = Some(common::run_with_until_logged(
                &query,
                &args,
                "consuming queue",
            ));
        }
    }
    publish(&channel, &exchange, "plant.hall1", vec![closing(0, 700)]).await;
    let expected = expected_windows(600);
    let deadline = Instant::now() + Duration::from_secs(60);
    while windows_of(&read_alerts(&out)).len() < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(eddy);
    assert_eq!(windows_of(&read_alerts(&out)), expected);
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
}

/// Asks the broker to close the connection named `name` (ConnectionProperties' connection name),
/// waiting up to 10 s for it to be there (it may be connecting again after the last close):
/// `true` when one was found and closed.
fn close_connection(name: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if close_connection_now(name) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn close_connection_now(name: &str) -> bool {
    let listed = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "pid",
            "client_properties",
            "--quiet",
            "--no-table-headers",
        ])
        .output()
        .expect("rabbitmqctl must be installed beside RabbitMQ");
    let text = String::from_utf8_lossy(&listed.stdout);
    let mut closed = false;
    for line in text.lines().filter(|l| l.contains(&format!("\"{name}\""))) {
        let pid = line.split_whitespace().next().expect("pid");
        let status = std::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "closed by the test"])
            .status()
            .expect("rabbitmqctl");
        closed |= status.success();
    }
    closed
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_closed_by_the_broker_lose_nothing_and_count_nothing_twice() {
    let id = id("closed");
    let (_connection, channel) = channel().await;
    let exchange = format!("eddy.readings.{id}");
    let alerts_exchange = format!("eddy.alerts.{id}");
    let queue = format!("eddy-readings-{id}");
    let collected = format!("eddy-collected-{id}");
    topic_exchange(&channel, &exchange).await;
    topic_exchange(&channel, &alerts_exchange).await;
    bound_queue(&channel, &queue, &exchange, "plant.#").await;
    bound_queue(&channel, &collected, &alerts_exchange, "#").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let source = format!("readings_{id}");
    let sink = format!("alerts_{id}");
    let query = fault_query(
        dir.path(),
        &queue,
        &exchange,
        &source,
        &sink,
        &format!(
            "connector = 'amqp', url = '{URL}', exchange = '{alerts_exchange}',
             routing_key = 'alerts.{{device_id}}', alert_id = 'true',
             retries = '100', retry_backoff = '100ms'"
        ),
    );
    let state = dir.path().join("state");
    let eddy = common::run_with_until_logged(
        &query,
        &[
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--checkpoint-interval",
            "300ms",
        ],
        "consuming queue",
    );
    // The connections are closed while readings keep coming, so that some deliveries are logged
    // but not yet acknowledged when the source's connection goes: the broker sends them again.
    let mut closing_tasks = Vec::new();
    for s in 0..600 {
        publish(&channel, &exchange, "plant.hall1", readings(s)).await;
        if s % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if s % 100 == 50 {
            let name = format!("eddy {source}");
            closing_tasks.push(tokio::task::spawn_blocking(move || close_connection(&name)));
        }
        if s == 420 {
            let name = format!("eddy {sink}");
            closing_tasks.push(tokio::task::spawn_blocking(move || close_connection(&name)));
        }
    }
    let mut closed = Vec::new();
    for t in closing_tasks {
        closed.push(t.await.expect("closed"));
    }
    publish(&channel, &exchange, "plant.hall1", vec![closing(0, 700)]).await;
    let expected = expected_windows(600);
    let mut consumer = channel
        .basic_consume(
            collected.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consuming");
    let mut alerts = Vec::new();
    while windows_of(&alerts).len() < expected.len() {
        let d = tokio::time::timeout(Duration::from_secs(60), consumer.next())
            .await
            .expect("every window's alert within 60 s")
            .expect("consumer open")
            .expect("delivery");
        d.ack(BasicAckOptions::default()).await.expect("acked");
        alerts.push(serde_json::from_slice(&d.data).expect("JSON"));
    }
    drop(eddy);
    assert!(
        closed.iter().all(|c| *c),
        "every connection found and closed: {closed:?}"
    );
    assert_eq!(windows_of(&alerts), expected);
    for q in [&queue, &collected] {
        let _ = channel
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}
