//! A backlog sent at once: 20,000 QoS 1 messages wait in a persistent session on a private
//! Mosquitto whose in-flight window is 5,000, and the MQTT source (with a state directory, so
//! through its ingest log) connects. The broker sends 5,000 before it has any acknowledgement, so
//! the source syncs and acknowledges thousands in one group, more than the event loop's request
//! queue (1,024) holds: the source must take every message, acknowledge every one (the broker
//! has none left for the session), and stop promptly when asked. Acknowledging that many at once
//! used to stop the source for good: it waited for the event loop, which waited for it. Run idle
//! and with two busy processes beside it (under load a broker reads the last acknowledgements
//! late: the source waits, after its DISCONNECT, until the broker closes the connection).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use eddy_engine::message::Message;
use eddy_engine::{Options, SourceContext, SourceSpec};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const MESSAGES: u64 = 20_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_larger_than_the_request_queue_is_acknowledged_without_stalling() {
    backlog(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_under_cpu_load_is_acknowledged_without_stalling() {
    backlog(true).await;
}

async fn backlog(cpu_load: bool) {
    let _load = cpu_load.then(common::CpuLoad::start);
    let dir = tempfile::tempdir().expect("temp dir");
    let (_broker, port, _) = common::mosquitto::private(
        dir.path(),
        "max_queued_messages 0\nmax_inflight_messages 5000\n",
    );
    let client_id = "eddy-backlog";
    // The session exists before the messages are published: the broker queues them for it.
    assert_eq!(drain_session(port, client_id).await, 0);
    publish(port, MESSAGES).await;

    let url = format!("mqtt://127.0.0.1:{port}");
    let options = Options::from_pairs([
        ("url", url.as_str()),
        ("topic", "backlog/+"),
        ("qos", "1"),
        ("clean_session", "false"),
        ("client_id", client_id),
    ]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("seq", DataType::Int64, true),
    ]));
    let source = eddy_connectors::mqtt::MqttSource::create(&SourceSpec {
        name: "readings",
        schema: &schema,
        options: &options,
    })
    .expect("source");
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let mut ctx = SourceContext::for_test("readings", Arc::clone(&schema), None, vec![tx], None)
        .with_durable_dir(dir.path().join("readings"));
    let shutdown = ctx.shutdown().clone();
    let running = tokio::spawn(async move { source.run(&mut ctx).await });

    let mut rows = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows < MESSAGES && Instant::now() < deadline {
        if let Ok(Some((_, Message::Batch(b)))) =
            tokio::time::timeout(Duration::from_secs(1), rx.recv()).await
        {
            rows += b.num_rows() as u64;
        }
    }
    assert_eq!(rows, MESSAGES, "rows handed on");
    // Stopping acknowledges every message synced, then disconnects.
    let asked = Instant::now();
    shutdown.cancel();
    // Keep reading so that nothing waits on a full channel.
    let drained = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let result = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the source stops within 5 s of shutdown")
        .expect("joined");
    assert!(result.is_ok(), "{result:?}");
    drained.abort();
    eprintln!("stopped {} ms after shutdown", asked.elapsed().as_millis());
    // The broker had every message acknowledged: it sends the session nothing again.
    assert_eq!(
        drain_session(port, client_id).await,
        0,
        "messages sent again"
    );
}

/// Connects with a persistent session, subscribes, and counts the messages the broker sends within
/// a second of quiet.
async fn drain_session(port: u16, client_id: &str) -> u64 {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_clean_session(false);
    let (client, mut events) = AsyncClient::new(options, 100);
    client
        .subscribe("backlog/+", QoS::AtLeastOnce)
        .await
        .expect("subscribe queued");
    let mut received = 0;
    let mut subscribed = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(1), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(_)))) => received += 1,
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => subscribed = true,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("broker: {e}"),
            Err(_) if subscribed => break,
            Err(_) => {}
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
    received
}

async fn publish(port: u16, n: u64) {
    let mut options = MqttOptions::new("backlog-pub", "127.0.0.1", port);
    options.set_inflight(1000);
    let (client, mut events) = AsyncClient::new(options, 10_000);
    let acks = tokio::spawn(async move {
        let mut acked = 0;
        while acked < n {
            match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) => {}
                other => panic!("publishing stopped: {other:?}"),
            }
        }
    });
    for seq in 0..n {
        let payload = format!(r#"{{"device_id":"m{}","seq":{seq}}}"#, seq % 10);
        client
            .publish(
                format!("backlog/m{}", seq % 10),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .expect("queued");
    }
    acks.await.expect("all acknowledged");
    let _ = client.disconnect().await;
}
