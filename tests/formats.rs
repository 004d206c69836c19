//! Formats through `eddy run`: raw payloads whose device and metric come from the topic's levels
//! (`plant/boiler-7/temp` with payload `81.5`) over a real broker, published back as raw values
//! and written as CSV; a CSV file with a header in its own column order; JSON readings wrapped in
//! objects, read through JSON paths. Expected rows are worked out by hand from the inputs.

mod common;

use std::time::{Duration, Instant};

use eddy_connectors::mqtt::EmbeddedBroker;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[tokio::test(flavor = "multi_thread")]
async fn raw_payloads_with_columns_from_topic_levels_go_out_raw_and_as_csv() {
    let broker = EmbeddedBroker::start()
        .await
        .expect("embedded broker starts");
    let port = broker.port();
    let unique = format!("formats-{}", std::process::id());
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("hot.csv");
    let dead = dir.path().join("dead.jsonl");
    let url = format!("mqtt://127.0.0.1:{port}");
    let query = dir.path().join("q.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (device_id TEXT, metric TEXT, value DOUBLE, received TIMESTAMP)
               WITH (connector = 'mqtt', url = '{url}', topic = '{unique}/#',
                     topic_pattern = '{unique}/{{device_id}}/{{metric}}',
                     format = 'raw', qos = 1, dead_letter = '{}');
             CREATE SINK hot WITH (connector = 'file', path = '{}', format = 'csv');
             CREATE SINK echo WITH (connector = 'mqtt', url = '{url}', topic = 'echo/{unique}/{{device_id}}',
                                    format = 'raw', value_column = 'value', qos = 1);
             INSERT INTO hot SELECT device_id, metric, value FROM readings WHERE value > 50;
             INSERT INTO echo SELECT device_id, value * 2 AS value FROM readings WHERE metric = 'temp';",
            dead.display(),
            out.display()
        ),
    )
    .expect("query written");

    let mut options = MqttOptions::new(format!("{unique}-sub"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (subscriber, mut events) = AsyncClient::new(options, 100);
    subscriber
        .subscribe(format!("echo/{unique}/#"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (echoed_tx, mut echoed) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(event) = events.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = echoed_tx.send((
                        p.topic.clone(),
                        String::from_utf8_lossy(&p.payload).to_string(),
                    ));
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("the broker acknowledged the subscription within 10 s")
        .expect("subscribed");

    let eddy = common::run_until_logged(&query, "subscribed to");
    let mut options = MqttOptions::new(format!("{unique}-pub"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (publisher, mut pub_events) = AsyncClient::new(options, 100);
    tokio::spawn(async move { while pub_events.poll().await.is_ok() {} });
    for (topic, payload) in [
        ("boiler-7/temp", "81.5"),
        ("boiler-7/pressure", "1.2"),
        ("boiler-8/temp", " 45 "),
        ("boiler-8/temp", "hot"),
        ("boiler-9", "70"),
    ] {
        publisher
            .publish(
                format!("{unique}/{topic}"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .expect("published");
    }

    // Two readings of the temperature echo back doubled, one message each, the bare value.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 2 && Instant::now() < deadline {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), echoed.recv()).await {
            got.push(m);
        }
    }
    got.sort();
    assert_eq!(
        got,
        [
            (format!("echo/{unique}/boiler-7"), "163.0".to_string()),
            (format!("echo/{unique}/boiler-8"), "90.0".to_string()),
        ]
    );
    // The hot reading as a CSV line; the bad value and the short topic as dead letters.
    common::wait_until("two dead letters", Duration::from_secs(20), || {
        std::fs::read_to_string(&dead)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    });
    drop(eddy);
    assert_eq!(
        std::fs::read_to_string(&out).expect("csv written"),
        "boiler-7,temp,81.5\n"
    );
    let dead = std::fs::read_to_string(&dead).expect("dead letters");
    assert!(dead.contains("value: 'hot' is not a Float64"), "{dead}");
    assert!(dead.contains("has 2 levels, the topic_pattern 3"), "{dead}");
}

#[test]
fn a_csv_file_with_a_header_and_json_paths_replay_into_windows() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The header's order is not the declared one, and it has a column the source does not declare.
    std::fs::write(
        dir.path().join("readings.csv"),
        "ts;site;temp;device_id\n\
         2026-01-01T00:00:01Z;north;70.5;m1\n\
         2026-01-01T00:00:04Z;north;80.5;m1\n\
         2026-01-01T00:00:05Z;south;not-a-number;m2\n\
         2026-01-01T00:00:06Z;south;60;m2\n\
         2026-01-01T00:00:12Z;north;90;m1\n",
    )
    .expect("csv written");
    // Devices that wrap their readings in an envelope.
    std::fs::write(
        dir.path().join("wrapped.jsonl"),
        [
            r#"{"device":{"id":"m1"},"data":{"temp":70.5,"at":"2026-01-01T00:00:01Z"}}"#,
            r#"{"device":{"id":"m1"},"data":{"temp":80.5,"at":"2026-01-01T00:00:04Z"}}"#,
            r#"{"device":{"id":"m2"},"data":{"temp":60}}"#,
            r#"{"device":{"id":"m2"},"data":{"temp":60,"at":"2026-01-01T00:00:06Z"}}"#,
            r#"{"device":{"id":"m1"},"data":{"temp":90,"at":"2026-01-01T00:00:12Z"}}"#,
        ]
        .join("\n"),
    )
    .expect("json written");
    std::fs::write(
        dir.path().join("q.sql"),
        "CREATE SOURCE csv_readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                                     WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
           WITH (connector = 'file', path = 'readings.csv', format = 'csv', delimiter = ';',
                 dead_letter = 'dead.jsonl');
         CREATE SOURCE wrapped (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                                WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
           WITH (connector = 'file', path = 'wrapped.jsonl', device_id = '$.device.id',
                 temp = '$.data.temp', ts = '$.data.at', dead_letter = 'dead.jsonl');
         CREATE SINK out WITH (connector = 'file', path = 'out.jsonl', mode = 'truncate');
         INSERT INTO out
         SELECT 'csv' AS input, device_id, window_start, count(*) AS n, avg(temp) AS avg_temp
         FROM TUMBLE(csv_readings, ts, INTERVAL '10' SECOND)
         GROUP BY device_id, window_start, window_end;
         INSERT INTO out
         SELECT 'json' AS input, device_id, window_start, count(*) AS n, avg(temp) AS avg_temp
         FROM TUMBLE(wrapped, ts, INTERVAL '10' SECOND)
         GROUP BY device_id, window_start, window_end;",
    )
    .expect("query written");
    let run = common::run_eddy(dir.path(), &["run", "q.sql", "--quiet"], &[]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let expected = [
        ("csv", "m1", "2026-01-01T00:00:00.000Z", 2, 75.5),
        ("csv", "m2", "2026-01-01T00:00:00.000Z", 1, 60.0),
        ("csv", "m1", "2026-01-01T00:00:10.000Z", 1, 90.0),
        ("json", "m1", "2026-01-01T00:00:00.000Z", 2, 75.5),
        ("json", "m2", "2026-01-01T00:00:00.000Z", 1, 60.0),
        ("json", "m1", "2026-01-01T00:00:10.000Z", 1, 90.0),
    ]
    .map(|(input, device, start, n, avg)| {
        format!(
            r#"{{"input":"{input}","device_id":"{device}","window_start":"{start}","n":{n},"avg_temp":{avg:?}}}"#
        )
    })
    .join("\n");
    let actual = std::fs::read_to_string(dir.path().join("out.jsonl")).expect("output");
    common::compare_rows(&actual, &expected, 1e-9).unwrap_or_else(|d| panic!("{d}"));
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).expect("dead letters");
    assert!(dead.contains("readings.csv:4"), "{dead}");
    assert!(dead.contains("'not-a-number' is not a Float64"), "{dead}");
    assert!(dead.contains("wrapped.jsonl:3"), "{dead}");
    assert!(
        dead.contains("required field 'ts' (at $.data.at)"),
        "{dead}"
    );
}
