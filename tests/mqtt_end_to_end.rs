//! Readings published to a real broker become alerts published by the MQTT sink: `eddy run` as a
//! process, a publisher and a subscriber as MQTT clients. The default run uses the embedded broker
//! (rumqttd); `.ci/run` also runs the same test against the Mosquitto on 127.0.0.1:1883.

mod common;

use std::time::{Duration, Instant};

use eddy_connectors::mqtt::EmbeddedBroker;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread")]
async fn readings_become_alerts_through_the_embedded_broker() {
    let broker = EmbeddedBroker::start()
        .await
        .expect("embedded broker starts");
    readings_become_alerts(broker.port()).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Mosquitto on 127.0.0.1:1883; .ci/run starts it and runs this test"]
async fn readings_become_alerts_through_mosquitto() {
    std::net::TcpStream::connect("127.0.0.1:1883").expect(
        "Mosquitto must listen on 127.0.0.1:1883 (mosquitto -d -c /etc/mosquitto/mosquitto.conf)",
    );
    readings_become_alerts(1883).await;
}

fn client(id: &str, port: u16) -> (AsyncClient, rumqttc::EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    AsyncClient::new(options, 1000)
}

async fn readings_become_alerts(port: u16) {
    let unique = format!(
        "e2e-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let dead = dir.path().join("dead.jsonl");
    let url = format!("mqtt://127.0.0.1:{port}");
    let query = format!(
        r#"
CREATE SOURCE readings (topic TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'mqtt', url = '{url}', topic = 'plant/{unique}/+/telemetry', qos = 1,
        dead_letter = '{dead}');
CREATE SINK alerts WITH (connector = 'mqtt', url = '{url}', topic = 'alerts/{unique}/{{device_id}}',
                         qos = 1);
INSERT INTO alerts
SELECT split_part(topic, '/', 3) AS device_id, window_start, window_end,
       avg(temp) AS avg_temp, max(temp) AS max_temp, count(*) AS n
FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
GROUP BY split_part(topic, '/', 3), window_start, window_end
HAVING avg(temp) > 75;
"#,
        dead = dead.display()
    );
    let file = dir.path().join("alerts.sql");
    std::fs::write(&file, query).expect("query file written");

    // The subscriber that receives the alerts.
    let (alerts_tx, mut alerts_rx) = mpsc::unbounded_channel();
    let (subscriber, mut sub_events) = client(&format!("{unique}-sub"), port);
    subscriber
        .subscribe(format!("alerts/{unique}/#"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    tokio::spawn(async move {
        loop {
            match sub_events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = alerts_tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });

    // Eddy, started as a user would; its log says when it has subscribed.
    let eddy = common::run_until_logged(&file, "subscribed to");

    // 30 s of readings at 10 Hz for a hot and a cool device, one bad message, then a reading at
    // 40 s that moves the watermark past the first three windows.
    let (publisher, mut pub_events) = client(&format!("{unique}-pub"), port);
    tokio::spawn(async move { while pub_events.poll().await.is_ok() {} });
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(1_767_225_600_000 + ms)
            .expect("valid time")
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    for i in 0..300i64 {
        for (device, temp) in [("hot-1", 80.0 + (i % 5) as f64), ("cool-2", 60.0)] {
            let payload = json!({"temp": temp, "ts": at(i * 100)}).to_string();
            publisher
                .publish(
                    format!("plant/{unique}/{device}/telemetry"),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .expect("publish");
        }
    }
    publisher
        .publish(
            format!("plant/{unique}/hot-1/telemetry"),
            QoS::AtLeastOnce,
            false,
            "{\"temp\": oops}",
        )
        .await
        .expect("publish");
    let last = json!({"temp": 60.0, "ts": at(40_000)}).to_string();
    publisher
        .publish(
            format!("plant/{unique}/cool-2/telemetry"),
            QoS::AtLeastOnce,
            false,
            last,
        )
        .await
        .expect("publish");

    let mut received = Vec::new();
    while received.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(30), alerts_rx.recv()).await {
            Ok(Some(alert)) => received.push(alert),
            _ => panic!("only {} of 3 alerts arrived: {received:?}", received.len()),
        }
    }
    received.sort();
    for (i, (topic, payload)) in received.iter().enumerate() {
        assert_eq!(topic, &format!("alerts/{unique}/hot-1"));
        let alert: Value = serde_json::from_slice(payload).expect("JSON alert");
        let start = format!("2026-01-01T00:00:{:02}.000Z", i * 10);
        let end = format!("2026-01-01T00:00:{:02}.000Z", (i + 1) * 10);
        assert_eq!(
            alert,
            json!({"device_id": "hot-1", "window_start": start, "window_end": end,
                   "avg_temp": 82.0, "max_temp": 84.0, "n": 100})
        );
    }

    // The bad message is in the dead-letter file, with the topic it came on and why.
    let deadline = Instant::now() + Duration::from_secs(10);
    let letters = loop {
        let text = std::fs::read_to_string(&dead).unwrap_or_default();
        if !text.is_empty() || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let letters = common::parse_lines(&letters);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["source"], "readings");
    assert_eq!(
        letters[0]["origin"],
        format!("plant/{unique}/hot-1/telemetry")
    );
    assert_eq!(letters[0]["payload"], "{\"temp\": oops}");
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("unexpected 'o'"),
        "{letters:?}"
    );

    // SIGTERM stops it cleanly, and no other alert was published.
    let mut eddy = eddy;
    let pid = eddy.0.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    let status = eddy.0.wait().expect("eddy exits");
    assert!(status.success(), "eddy exited with {status}");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), alerts_rx.recv())
            .await
            .is_err(),
        "an unexpected alert arrived"
    );
}
