//! Brokers that go away, with a private Mosquitto (a free port, persistence) stopped and started
//! again: readings published as soon as the source's broker is back all reach Eddy (subscribed at
//! QoS 1 with a persistent session), and alerts computed while the sink's broker is down are
//! published once it is back, none lost. Needs the `mosquitto` binary (Debian's package), which
//! this machine has; the tests fail if it is missing.

mod common;

use common::mosquitto::{Mosquitto, wait_for_port};

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// Publishes readings `from..to` at QoS 1 and waits until the broker has acknowledged them all.
async fn publish(port: u16, id: &str, from: u32, to: u32) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 1000);
    for i in from..to {
        let payload = format!(
            r#"{{"device_id":"m1","seq":{i},"ts":{}}}"#,
            1_767_225_600_000u64 + i as u64
        );
        client
            .publish("restart/m1/reading", QoS::AtLeastOnce, false, payload)
            .await
            .expect("queued");
    }
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked < to - from {
        assert!(
            Instant::now() < deadline,
            "the broker acknowledged {acked} of {}",
            to - from
        );
        if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
            tokio::time::timeout(Duration::from_secs(1), events.poll()).await
        {
            acked += 1;
        }
    }
    let _ = client.disconnect().await;
}

/// Waits until the output holds every sequence number below `n`; returns the distinct ones.
async fn received(out: &std::path::Path, n: u32) -> std::collections::BTreeSet<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seqs: std::collections::BTreeSet<u64> =
            common::parse_lines(&std::fs::read_to_string(out).unwrap_or_default())
                .iter()
                .filter_map(|r| r["seq"].as_u64())
                .collect();
        if seqs.len() as u32 >= n || Instant::now() > deadline {
            return seqs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readings_published_across_a_broker_restart_all_arrive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (broker, port, config) = common::mosquitto::private(dir.path(), "");

    let out = dir.path().join("out.jsonl");
    let query = dir.path().join("restart.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (device_id TEXT, seq BIGINT, ts TIMESTAMP,
                WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'mqtt', url = 'mqtt://127.0.0.1:{port}', topic = 'restart/+/reading',
                     qos = 1, clean_session = false, client_id = 'eddy-restart-test');
             CREATE SINK out WITH (connector = 'file', path = '{}');
             INSERT INTO out SELECT device_id, seq FROM readings;",
            out.display()
        ),
    )
    .expect("query written");
    let _eddy = common::run_until_logged(&query, "subscribed to");

    publish(port, "restart-pub-1", 0, 100).await;
    assert_eq!(received(&out, 100).await.len(), 100, "before the restart");

    // The broker goes away and comes back; readings are published at once, before Eddy has
    // reconnected: the broker keeps them in Eddy's session.
    broker.stop();
    let _broker = Mosquitto::start(&config);
    wait_for_port(port);
    publish(port, "restart-pub-2", 100, 200).await;

    let seqs = received(&out, 200).await;
    let missing: Vec<u64> = (0..200).filter(|s| !seqs.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "readings lost across the restart: {missing:?}"
    );
}

/// Subscribes to `filter` at QoS 1 under a persistent session and returns once the broker has
/// acknowledged the subscription; the payloads received come on the channel.
async fn collect(
    port: u16,
    id: &str,
    filter: &str,
) -> (AsyncClient, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_clean_session(false);
    let (client, mut events) = AsyncClient::new(options, 1000);
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("subscribe queued");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p.payload.to_vec());
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(subscribed_tx) = subscribed_tx.take() {
                        let _ = subscribed_tx.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .unwrap_or_else(|_| {
            panic!("the broker did not acknowledge the subscription to {filter} within 10 s")
        })
        .expect("the consumer's event loop runs");
    (client, rx)
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_published_while_the_sink_broker_is_down_arrive_after_it_returns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (broker, port, config) = common::mosquitto::private(dir.path(), "");
    // The consumer of the alerts keeps a persistent session: what arrives while it is away waits.
    let (_consumer, mut alerts) = collect(port, "alerts-consumer", "sink-down/#").await;
    broker.stop();

    // 100 readings, each one an alert; the sink's broker is down while Eddy computes them.
    let lines: Vec<String> = (0..100)
        .map(|i| {
            format!(
                r#"{{"device_id":"m{}","seq":{i},"ts":{}}}"#,
                i % 4,
                1_767_225_600_000i64 + i
            )
        })
        .collect();
    std::fs::write(dir.path().join("input.jsonl"), lines.join("\n")).expect("input");
    let query = dir.path().join("q.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (device_id TEXT, seq BIGINT, ts TIMESTAMP,
                WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'file', path = '{}');
             CREATE SINK alerts WITH (connector = 'mqtt', url = 'mqtt://127.0.0.1:{port}',
                                      topic = 'sink-down/{{device_id}}', qos = 1);
             INSERT INTO alerts SELECT device_id, seq FROM readings;",
            dir.path().join("input.jsonl").display()
        ),
    )
    .expect("query written");
    let mut command = common::eddy();
    command
        .args(["run", query.to_str().expect("utf-8"), "--quiet"])
        .env("EDDY_LOG", "warn");
    let mut eddy = common::Logged::spawn(command);
    // The broker comes back once the sink has found it down.
    tokio::task::block_in_place(|| {
        eddy.wait_for_line("cannot reach the broker", Duration::from_secs(30))
    });
    let _broker = Mosquitto::start(&config);
    wait_for_port(port);

    let result = tokio::task::spawn_blocking(move || eddy.wait())
        .await
        .expect("joined");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot reach the broker"),
        "the sink retried: {stderr}"
    );

    let mut seqs = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seqs.len() < 100 && Instant::now() < deadline {
        if let Ok(Some(payload)) = tokio::time::timeout(Duration::from_secs(1), alerts.recv()).await
        {
            let v: serde_json::Value = serde_json::from_slice(&payload).expect("JSON alert");
            seqs.insert(v["seq"].as_u64().expect("seq"));
        }
    }
    let missing: Vec<u64> = (0..100).filter(|s| !seqs.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "alerts lost while the sink's broker was down: {missing:?}"
    );
}
