//! Rules of `eddy serve` that read one catalog source share its connection: one MQTT client (or
//! one consumer of an AMQP queue), whatever the number of rules, each reading (taken at QoS 1
//! from the Mosquitto on 127.0.0.1:1883, or from RabbitMQ on 127.0.0.1:5672) handed to every rule
//! exactly once, while a rule is paused and resumed (it goes on from its checkpoint, with the
//! readings sent meanwhile), a new rule joins (from the readings that follow), the service
//! restarts, and it restarts with the source defined anew.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};

use common::service::{Client, Service, TOKEN};

/// How many times each `seq` is in a rule's output file.
fn seen(dir: &Path, file: &str) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for row in common::windows::read_alerts(&dir.join(file)) {
        if let Some(seq) = row["seq"].as_i64() {
            *counts.entry(seq).or_insert(0) += 1;
        }
    }
    counts
}

/// Every `seq` in `expected` exactly once, and nothing else.
fn exactly(expected: impl Iterator<Item = i64>) -> BTreeMap<i64, usize> {
    expected.map(|s| (s, 1)).collect()
}

/// `seqs` (ascending) as ranges of consecutive numbers.
fn ranges(seqs: impl Iterator<Item = i64>) -> Vec<std::ops::RangeInclusive<i64>> {
    let mut ranges: Vec<std::ops::RangeInclusive<i64>> = Vec::new();
    for s in seqs {
        match ranges.last_mut() {
            Some(r) if *r.end() + 1 == s => *r = *r.start()..=s,
            _ => ranges.push(s..=s),
        }
    }
    ranges
}

/// Waits until rule output `file` holds exactly the readings `expected`, failing with what it
/// holds otherwise.
fn wait_for(dir: &Path, file: &str, expected: &BTreeMap<i64, usize>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = seen(dir, file);
        if &got == expected {
            return;
        }
        let too_many = got.iter().any(|(s, n)| *n > 1 || !expected.contains_key(s));
        assert!(
            !too_many && std::time::Instant::now() < deadline,
            "{file}: expected {} readings once each, got {} distinct, duplicated or unexpected: {:?}, missing: {:?}",
            expected.len(),
            got.len(),
            got.iter()
                .filter(|(s, n)| **n > 1 || !expected.contains_key(s))
                .take(10)
                .collect::<Vec<_>>(),
            ranges(expected.keys().filter(|s| !got.contains_key(s)).copied())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn publish(publisher: &AsyncClient, topic: &str, seqs: std::ops::Range<i64>) {
    for seq in seqs {
        publisher
            .publish(
                topic,
                QoS::AtLeastOnce,
                false,
                json!({"device_id": format!("d-{}", seq % 7), "seq": seq}).to_string(),
            )
            .await
            .expect("published");
    }
}

async fn metrics(client: &Client) -> String {
    client
        .http
        .get(format!("{}/metrics", client.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

async fn create(client: &Client, name: &str, sql: &str) {
    let (status, body) = client
        .send(
            Method::POST,
            "/api/rules",
            Some(json!({"name": name, "sql": sql})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn post(client: &Client, path: &str) -> Value {
    let (status, body) = client.send(Method::POST, path, None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_reading_one_source_share_one_connection_and_each_reads_every_reading_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = std::process::id();
    let topic = format!("serve-shared-{id}/readings");
    // A fixed client id and a kept session: two connections under one id would take the
    // session from each other, over and over.
    common::service::prepare(
        dir.path(),
        &format!(
            "CREATE SOURCE readings (device_id TEXT, seq BIGINT)
               WITH (connector = 'mqtt', url = 'mqtt://127.0.0.1:1883', topic = '{topic}',
                     qos = 1, client_id = 'eddy-shared-{id}', clean_session = 'false');
             CREATE SINK every_out WITH (connector = 'file', path = 'every.jsonl');
             CREATE SINK even_out WITH (connector = 'file', path = 'even.jsonl');
             CREATE SINK later_out WITH (connector = 'file', path = 'later.jsonl');
"
        ),
    );
    let service = Service::start(dir.path());
    let client = Client {
        http: reqwest::Client::new(),
        url: service.url.clone(),
    };
    create(
        &client,
        "every",
        "INSERT INTO every_out SELECT device_id, seq FROM readings;",
    )
    .await;
    create(
        &client,
        "even",
        "INSERT INTO even_out SELECT device_id, seq FROM readings WHERE seq % 2 = 0;",
    )
    .await;

    let mut options = MqttOptions::new(format!("serve-shared-publisher-{id}"), "127.0.0.1", 1883);
    options.set_keep_alive(Duration::from_secs(30));
    let (publisher, mut events) = AsyncClient::new(options, 100);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });

    // The connection is made when the first rule starts, and each new rule reads from where the
    // source is when it joins: readings until both take them, then each rule has every reading
    // from its first on.
    let mut next = 0;
    let firsts = loop {
        let firsts =
            ["every.jsonl", "even.jsonl"].map(|f| seen(dir.path(), f).keys().next().copied());
        if let [Some(every), Some(even)] = firsts {
            break [every, even];
        }
        assert!(next < 300, "the rules take no reading");
        publish(&publisher, &topic, next..next + 2).await;
        next += 2;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let [start, even_start] = firsts;
    let evens = |upto: i64| exactly((even_start..upto).filter(|s| s % 2 == 0));
    publish(&publisher, &topic, next..300).await;
    wait_for(dir.path(), "every.jsonl", &exactly(start..300));
    wait_for(dir.path(), "even.jsonl", &evens(300));

    let text = metrics(&client).await;
    let metric = |name: &str, labels: &[(&str, &str)]| common::service::metric(&text, name, labels);
    assert_eq!(
        metric("eddy_shared_source_connections", &[]),
        Some(1.0),
        "{text}"
    );
    for rule in ["every", "even"] {
        let labels = [("rule", rule), ("source", "readings")];
        assert_eq!(
            metric("eddy_source_reconnects_total", &labels),
            Some(0.0),
            "{text}"
        );
    }

    // Paused, the rule holds back no other; a rule made meanwhile reads from where the source
    // is; resumed, the paused rule reads what it missed, from its checkpoint on.
    assert_eq!(
        post(&client, "/api/rules/even/pause").await["state"],
        "paused"
    );
    publish(&publisher, &topic, 300..400).await;
    wait_for(dir.path(), "every.jsonl", &exactly(start..400));
    create(
        &client,
        "later",
        "INSERT INTO later_out SELECT device_id, seq FROM readings;",
    )
    .await;
    publish(&publisher, &topic, 400..500).await;
    wait_for(dir.path(), "every.jsonl", &exactly(start..500));
    wait_for(dir.path(), "later.jsonl", &exactly(400..500));
    assert_eq!(
        post(&client, "/api/rules/even/resume").await["state"],
        "running"
    );
    wait_for(dir.path(), "even.jsonl", &evens(500));

    // The service restarted: every rule goes on from its checkpoint through the one connection.
    service.stop();
    publish(&publisher, &topic, 500..600).await;
    let service = Service::start(dir.path());
    let client = Client {
        http: reqwest::Client::new(),
        url: service.url.clone(),
    };
    publish(&publisher, &topic, 600..700).await;
    wait_for(dir.path(), "every.jsonl", &exactly(start..700));
    wait_for(dir.path(), "even.jsonl", &evens(700));
    wait_for(dir.path(), "later.jsonl", &exactly(400..700));
    let text = metrics(&client).await;
    assert_eq!(
        common::service::metric(&text, "eddy_shared_source_connections", &[]),
        Some(1.0),
        "{text}"
    );
    service.stop();

    // The source's definition changed while the service was down (its messages now come
    // through another log): the rules go on, from what the new connection receives, the
    // readings sent meanwhile included (the broker kept the session).
    let catalog = std::fs::read_to_string(dir.path().join("catalog.sql")).expect("catalog");
    std::fs::write(
        dir.path().join("catalog.sql"),
        catalog.replace("qos = 1,", "qos = 1, linger = '7ms',"),
    )
    .expect("catalog");
    publish(&publisher, &topic, 700..800).await;
    let service = Service::start(dir.path());
    publish(&publisher, &topic, 800..900).await;
    wait_for(dir.path(), "every.jsonl", &exactly(start..900));
    wait_for(dir.path(), "even.jsonl", &evens(900));
    wait_for(dir.path(), "later.jsonl", &exactly(400..900));
    service.stop();
}

async fn amqp_channel() -> (lapin::Connection, lapin::Channel) {
    let connection = lapin::Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap_or_else(|e| {
        panic!("RabbitMQ must listen on 127.0.0.1:5672 (rabbitmq-server -detached): {e}")
    });
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    (connection, channel)
}

/// Sends readings `seqs` to `queue` through the default exchange, confirmed by the broker.
async fn send_to_queue(channel: &lapin::Channel, queue: &str, seqs: std::ops::Range<i64>) {
    for seq in seqs {
        let payload = json!({"device_id": format!("d-{}", seq % 7), "seq": seq}).to_string();
        channel
            .basic_publish(
                "".into(),
                queue.into(),
                lapin::options::BasicPublishOptions::default(),
                payload.as_bytes(),
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("published")
            .await
            .expect("confirmed");
    }
}

/// Where a test's readings are sent: a queue, or a JetStream stream's subject.
enum Broker {
    Amqp(lapin::Channel, String),
    JetStream(async_nats::jetstream::Context, String),
}

impl Broker {
    async fn send(&self, seqs: std::ops::Range<i64>) {
        match self {
            Broker::Amqp(channel, queue) => send_to_queue(channel, queue, seqs).await,
            Broker::JetStream(js, subject) => {
                let mut stored = Vec::new();
                for seq in seqs {
                    let payload =
                        json!({"device_id": format!("d-{}", seq % 7), "seq": seq}).to_string();
                    stored.push(
                        js.publish(subject.clone(), payload.into())
                            .await
                            .expect("published"),
                    );
                }
                for s in stored {
                    s.await.expect("stored");
                }
            }
        }
    }
}

/// Two rules over catalog source `readings` (`source`: its connector options), fed through
/// `broker`: each has every message once, through a pause and a restart (their one consumer
/// shared, two would split the messages); a paused rule's position is held in the source's log
/// directory; a rule reading the same messages through a source declared otherwise (`other`:
/// its options, with `linger = '7ms'` added) is refused with the reason, naming `named`.
async fn shared_by_two_rules(source: &str, broker: Broker, other: &str, named: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    common::service::prepare(
        dir.path(),
        &format!(
            "CREATE SOURCE readings (device_id TEXT, seq BIGINT) WITH ({source});
             CREATE SINK every_out WITH (connector = 'file', path = 'every.jsonl');
             CREATE SINK even_out WITH (connector = 'file', path = 'even.jsonl');
             CREATE SINK other_out WITH (connector = 'file', path = 'other.jsonl');
"
        ),
    );
    let service = Service::start(dir.path());
    let client = Client {
        http: reqwest::Client::new(),
        url: service.url.clone(),
    };
    create(
        &client,
        "every",
        "INSERT INTO every_out SELECT device_id, seq FROM readings;",
    )
    .await;
    create(
        &client,
        "even",
        "INSERT INTO even_out SELECT device_id, seq FROM readings WHERE seq % 2 = 0;",
    )
    .await;

    // Each rule reads from where the consumer is when it joins: readings until both take them.
    let mut next = 0;
    let firsts = loop {
        let firsts =
            ["every.jsonl", "even.jsonl"].map(|f| seen(dir.path(), f).keys().next().copied());
        if let [Some(every), Some(even)] = firsts {
            break [every, even];
        }
        assert!(next < 300, "the rules take no reading");
        broker.send(next..next + 2).await;
        next += 2;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let [start, even_start] = firsts;
    let evens = |upto: i64| exactly((even_start..upto).filter(|s| s % 2 == 0));
    broker.send(next..300).await;
    wait_for(dir.path(), "every.jsonl", &exactly(start..300));
    wait_for(dir.path(), "even.jsonl", &evens(300));
    let text = metrics(&client).await;
    assert_eq!(
        common::service::metric(&text, "eddy_shared_source_connections", &[]),
        Some(1.0),
        "{text}"
    );

    // The same messages through a source of another definition: a second consumer; refused.
    create(
        &client,
        "other",
        &format!(
            "CREATE SOURCE own (device_id TEXT, seq BIGINT) WITH ({other}, linger = '7ms');
             INSERT INTO other_out SELECT device_id, seq FROM own;"
        ),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let (_, body) = client.send(Method::GET, "/api/rules/other", None).await;
        if body["state"] == "failed" {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rule reading the messages otherwise runs: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let why = refused["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("split its messages") && why.contains(named),
        "{refused}"
    );
    let (status, _) = client.send(Method::DELETE, "/api/rules/other", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Paused, a rule's position is held in the source's log directory; resumed, it reads what
    // it missed.
    assert_eq!(
        post(&client, "/api/rules/even/pause").await["state"],
        "paused"
    );
    broker.send(300..400).await;
    wait_for(dir.path(), "every.jsonl", &exactly(start..400));
    let held: Vec<String> = std::fs::read_dir(dir.path().join("state/sources"))
        .expect("the shared sources' logs")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("held.json")).ok())
        .collect();
    assert!(
        held.iter().any(|h| h.contains("even")),
        "no position held for the paused rule: {held:?}"
    );
    assert_eq!(
        post(&client, "/api/rules/even/resume").await["state"],
        "running"
    );
    wait_for(dir.path(), "even.jsonl", &evens(400));

    // Restarted, with messages sent meanwhile: each rule goes on from its checkpoint.
    service.stop();
    broker.send(400..500).await;
    let service = Service::start(dir.path());
    broker.send(500..600).await;
    wait_for(dir.path(), "every.jsonl", &exactly(start..600));
    wait_for(dir.path(), "even.jsonl", &evens(600));
    assert!(seen(dir.path(), "other.jsonl").is_empty());
    service.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_reading_one_queue_share_one_consumer_and_each_reads_every_message_once() {
    let queue = format!("eddy-serve-shared-{}", std::process::id());
    let (_connection, channel) = amqp_channel().await;
    let _ = channel
        .queue_delete(
            queue.as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await;
    channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("queue declared");
    let amqp = format!(
        "connector = 'amqp', url = 'amqp://guest:guest@127.0.0.1:5672/%2f', queue = '{queue}'"
    );
    shared_by_two_rules(&amqp, Broker::Amqp(channel, queue.clone()), &amqp, &queue).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_reading_one_stream_share_one_durable_consumer_and_each_reads_every_message_once() {
    let id = std::process::id();
    let stream = format!("eddy-serve-shared-{id}");
    let subject = format!("serve-shared-{id}.readings");
    let client = async_nats::connect("nats://127.0.0.1:4222")
        .await
        .unwrap_or_else(|e| {
            panic!("NATS with JetStream must listen on 127.0.0.1:4222 (nats-server -js): {e}")
        });
    let js = async_nats::jetstream::new(client);
    let _ = js.delete_stream(&stream).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .expect("stream created");
    let nats = format!("connector = 'nats', url = 'nats://127.0.0.1:4222', stream = '{stream}'");
    // The other rule's source asks for the catalog source's durable consumer by name.
    let other = format!("{nats}, durable = 'eddy-readings'");
    shared_by_two_rules(
        &nats,
        Broker::JetStream(js.clone(), subject),
        &other,
        &stream,
    )
    .await;
    let _ = js.delete_stream(&stream).await;
}

/// A shared MQTT source through a broker restart, with two busy processes beside the service: a
/// private Mosquitto (Debian's binary, its defaults plus persistence and no limit to the messages
/// it queues for a client) restarts while readings
/// flow, and readings published at once after it is back, before the shared connection has
/// reconnected, arrive in a burst from the session the broker kept; one rule is paused across
/// the restart. Each rule has every reading exactly once, and the connection was made again once
/// for all of them.
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_under_load_loses_no_reading_for_any_rule() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker_dir = tempfile::tempdir().expect("temp dir");
    // Mosquitto's defaults but one: it drops what passes 1,000 messages queued for a client, and
    // with its in-flight window of 20 the readings published at full speed here pass that under
    // the CPU load even while the connection is up.
    let (broker, port, config) =
        common::mosquitto::private(broker_dir.path(), "max_queued_messages 0\n");
    let id = std::process::id();
    let topic = format!("serve-restart-{id}/readings");
    common::service::prepare(
        dir.path(),
        &format!(
            "CREATE SOURCE readings (device_id TEXT, seq BIGINT)
               WITH (connector = 'mqtt', url = 'mqtt://127.0.0.1:{port}', topic = '{topic}',
                     qos = 1, client_id = 'eddy-shared-restart-{id}', clean_session = 'false');
             CREATE SINK every_out WITH (connector = 'file', path = 'every.jsonl');
             CREATE SINK even_out WITH (connector = 'file', path = 'even.jsonl');
             CREATE SINK odd_out WITH (connector = 'file', path = 'odd.jsonl');
"
        ),
    );
    let _load = common::CpuLoad::start();
    let service = Service::start(dir.path());
    let client = Client {
        http: reqwest::Client::new(),
        url: service.url.clone(),
    };
    for (name, sql) in [
        (
            "every",
            "INSERT INTO every_out SELECT device_id, seq FROM readings;",
        ),
        (
            "even",
            "INSERT INTO even_out SELECT device_id, seq FROM readings WHERE seq % 2 = 0;",
        ),
        (
            "odd",
            "INSERT INTO odd_out SELECT device_id, seq FROM readings WHERE seq % 2 = 1;",
        ),
    ] {
        create(&client, name, sql).await;
    }
    let publisher = |n: u32| {
        let mut options =
            MqttOptions::new(format!("serve-restart-pub-{id}-{n}"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        let (publisher, mut events) = AsyncClient::new(options, 1000);
        tokio::spawn(async move { while events.poll().await.is_ok() {} });
        publisher
    };
    let first = publisher(1);
    let mut next = 0;
    let firsts = loop {
        let firsts = ["every.jsonl", "even.jsonl", "odd.jsonl"]
            .map(|f| seen(dir.path(), f).keys().next().copied());
        if let [Some(every), Some(even), Some(odd)] = firsts {
            break [every, even, odd];
        }
        assert!(next < 300, "the rules take no reading");
        publish(&first, &topic, next..next + 2).await;
        next += 2;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let [start, even_start, odd_start] = firsts;
    let evens = |upto: i64| exactly((even_start..upto).filter(|s| s % 2 == 0));
    let odds = |upto: i64| exactly((odd_start..upto).filter(|s| s % 2 == 1));
    publish(&first, &topic, next..500).await;
    wait_for(dir.path(), "every.jsonl", &exactly(start..500));
    assert_eq!(
        post(&client, "/api/rules/even/pause").await["state"],
        "paused"
    );
    publish(&first, &topic, 500..700).await;
    wait_for(dir.path(), "every.jsonl", &exactly(start..700));

    // The broker restarts; readings are published as soon as it listens, then more while the
    // connection is back.
    broker.stop();
    let _broker = common::mosquitto::Mosquitto::start(&config);
    common::mosquitto::wait_for_port(port);
    let second = publisher(2);
    publish(&second, &topic, 700..1500).await;
    assert_eq!(
        post(&client, "/api/rules/even/resume").await["state"],
        "running"
    );
    publish(&second, &topic, 1500..2500).await;
    wait_for(dir.path(), "every.jsonl", &exactly(start..2500));
    wait_for(dir.path(), "even.jsonl", &evens(2500));
    wait_for(dir.path(), "odd.jsonl", &odds(2500));

    let text = metrics(&client).await;
    assert_eq!(
        common::service::metric(&text, "eddy_shared_source_connections", &[]),
        Some(1.0),
        "{text}"
    );
    for rule in ["every", "odd"] {
        let reconnects = common::service::metric(
            &text,
            "eddy_source_reconnects_total",
            &[("rule", rule), ("source", "readings")],
        );
        assert!(reconnects >= Some(1.0), "{rule}: {reconnects:?}\n{text}");
    }
    service.stop();
}
