//! MQTT 5 against a private Mosquitto (Debian's build, its shipped settings): user properties
//! read into columns (straight from the connection and through the ingest log that
//! `--state-dir` puts behind a QoS 1 source), and a sink's message expiry, which the broker
//! applies to what it keeps.

mod common;

use std::time::Duration;

use common::mosquitto;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::Value;

fn client(id: &str, port: u16) -> (AsyncClient, rumqttc::v5::EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    AsyncClient::new(options, 1000)
}

/// Readings published with the user properties `site` and (but for every fifth) `line`: the
/// source fills the declared columns of those names, NULL where a reading has no `line`, and a
/// property whose value is not a number where a number is declared sends the reading to the dead
/// letters.
async fn user_properties_fill_columns(state_dir: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_broker, port, _) = mosquitto::private(dir.path(), "");
    let out = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let query = dir.path().join("q.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (seq BIGINT, temp DOUBLE, site TEXT, line INT)
               WITH (connector = 'mqtt', url = 'mqtt://127.0.0.1:{port}', topic = 'plant/+/temp',
                     qos = 1, protocol = 'v5', user_properties = 'site, line',
                     dead_letter = '{}');
             CREATE SINK out WITH (connector = 'file', path = '{}');
             INSERT INTO out SELECT seq, temp, site, line FROM readings;",
            dead.display(),
            out.display()
        ),
    )
    .expect("query written");
    let state = dir.path().join("state");
    let state_arg = state.display().to_string();
    let args: Vec<&str> = if state_dir {
        vec!["--state-dir", &state_arg]
    } else {
        Vec::new()
    };
    let running = common::run_with_until_logged(&query, &args, "subscribed to");

    let (publisher, mut events) = client("properties-publisher", port);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    for seq in 0..50 {
        let mut properties = PublishProperties::default();
        properties
            .user_properties
            .push(("site".into(), format!("site-{}", seq % 3)));
        if seq % 5 != 0 {
            let line = if seq == 7 {
                "seven".to_string()
            } else {
                (seq % 4).to_string()
            };
            properties.user_properties.push(("line".into(), line));
        }
        properties
            .user_properties
            .push(("firmware".into(), "2.4.1".into()));
        publisher
            .publish_with_properties(
                format!("plant/m{}/temp", seq % 4),
                QoS::AtLeastOnce,
                false,
                format!(r#"{{"seq":{seq},"temp":{}.5}}"#, 60 + seq),
                properties,
            )
            .await
            .expect("published");
    }
    let rows = |path: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    common::wait_until("every reading", Duration::from_secs(20), || {
        rows(&out).len() >= 49 && !rows(&dead).is_empty()
    });
    drop(running);

    let mut got = rows(&out);
    got.sort_by_key(|r| r["seq"].as_i64());
    let expected: Vec<Value> = (0..50)
        .filter(|&seq| seq != 7)
        .map(|seq| {
            let line = if seq % 5 == 0 {
                Value::Null
            } else {
                Value::from(seq % 4)
            };
            serde_json::json!({
                "seq": seq,
                "temp": 60.5 + seq as f64,
                "site": format!("site-{}", seq % 3),
                "line": line,
            })
        })
        .collect();
    assert_eq!(got, expected);
    let dead = rows(&dead);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter = dead[0].to_string();
    assert!(letter.contains("'seven'"), "{letter}");
    assert!(letter.contains("plant/m3/temp"), "{letter}");
    assert!(
        !letter.contains("firmware"),
        "the origin is the topic: {letter}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_properties_fill_columns_straight_from_the_connection() {
    user_properties_fill_columns(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_properties_fill_columns_through_the_ingest_log() {
    user_properties_fill_columns(true).await;
}

/// The first retained publish to `topic` a new subscriber gets within `within`, if any.
async fn retained(port: u16, id: &str, topic: &str, within: Duration) -> Option<Publish> {
    let (subscriber, mut events) = client(id, port);
    subscriber
        .subscribe(topic, QoS::AtLeastOnce)
        .await
        .expect("subscribed");
    let received = tokio::time::timeout(within, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => return p,
                Ok(_) => {}
                Err(e) => panic!("subscriber lost the broker: {e}"),
            }
        }
    })
    .await
    .ok();
    drop(subscriber.disconnect().await);
    received
}

/// Alerts published retained with `message_expiry = '2s'` carry the expiry, and the broker drops
/// them once it has passed: a subscriber that comes at once gets the alert, one that comes after
/// three seconds gets nothing; a sink without expiry keeps its retained alert.
#[tokio::test(flavor = "multi_thread")]
async fn the_broker_drops_alerts_once_their_expiry_has_passed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_broker, port, _) = mosquitto::private(dir.path(), "");
    let input = dir.path().join("input.jsonl");
    std::fs::write(
        &input,
        r#"{"device_id":"boiler-7","temp":91.5}
"#,
    )
    .expect("input written");
    let query = dir.path().join("q.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (device_id TEXT, temp DOUBLE)
               WITH (connector = 'file', path = '{}');
             CREATE SINK brief WITH (connector = 'mqtt', url = 'mqtt://127.0.0.1:{port}',
               topic = 'alerts/brief/{{device_id}}', qos = 1, retain = 'true', protocol = 'v5',
               message_expiry = '2s');
             CREATE SINK kept WITH (connector = 'mqtt', url = 'mqtt://127.0.0.1:{port}',
               topic = 'alerts/kept/{{device_id}}', qos = 1, retain = 'true', protocol = 'v5');
             INSERT INTO brief SELECT device_id, temp FROM readings;
             INSERT INTO kept SELECT device_id, temp FROM readings;",
            input.display()
        ),
    )
    .expect("query written");
    let output = common::run_eddy(dir.path(), &["run", "q.sql"], &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let first = retained(
        port,
        "early",
        "alerts/brief/boiler-7",
        Duration::from_secs(5),
    )
    .await
    .expect("the alert is retained before its expiry");
    let payload: Value = serde_json::from_slice(&first.payload).expect("JSON alert");
    assert_eq!(payload["temp"], 91.5);
    let left = first
        .properties
        .and_then(|p| p.message_expiry_interval)
        .expect("the alert carries its expiry");
    assert!(left <= 2, "{left} seconds left of 2");

    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = retained(
        port,
        "late",
        "alerts/brief/boiler-7",
        Duration::from_secs(2),
    )
    .await;
    assert!(late.is_none(), "expired, yet delivered: {late:?}");
    let kept = retained(port, "kept", "alerts/kept/boiler-7", Duration::from_secs(5)).await;
    let kept = kept.expect("an alert without expiry stays retained");
    assert!(
        kept.properties
            .and_then(|p| p.message_expiry_interval)
            .is_none()
    );
}
