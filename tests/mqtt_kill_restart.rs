//! `kill -9` of `eddy run` while readings keep arriving over MQTT at QoS 1 (a private Mosquitto,
//! a persistent session), then a restart from the newest checkpoint: no alert is missing and none
//! is wrong. Eddy acknowledges a reading only once a checkpoint covers it, so the broker sends
//! the killed instance's unacknowledged readings again to the restarted one, which resumes from
//! the checkpoint's window state.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const T0: i64 = 1_767_225_600_000;
/// Readings, 10 ms of event time apart, alternating between two devices.
const READINGS: u64 = 3_000;

/// Publishes readings `from..to` at QoS 1, about 1,000 a second, and waits for the broker's
/// acknowledgements.
async fn publish(port: u16, id: &str, from: u64, to: u64, ts: impl Fn(u64) -> i64) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 10_000);
    let acks = tokio::spawn(async move {
        let mut acked = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked < to - from && Instant::now() < deadline {
            if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) =
                tokio::time::timeout(Duration::from_secs(1), events.poll()).await
            {
                acked += 1;
            }
        }
        acked
    });
    for seq in from..to {
        let payload = format!(
            r#"{{"device_id":"m{}","seq":{seq},"ts":{}}}"#,
            seq % 2,
            ts(seq)
        );
        client
            .publish("kill/reading", QoS::AtLeastOnce, false, payload)
            .await
            .expect("queued");
        if seq % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let acked = acks.await.expect("joined");
    assert_eq!(acked, to - from, "the broker acknowledged {acked} readings");
    let _ = client.disconnect().await;
}

/// The alerts as (device, window start, count, sum of seq), de-duplicated.
fn windows(out: &std::path::Path) -> BTreeSet<(String, String, u64, u64)> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            (
                v["device_id"].as_str().unwrap_or_default().to_string(),
                v["window_start"].as_str().unwrap_or_default().to_string(),
                v["n"].as_u64().unwrap_or(0),
                v["s"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_instance_loses_no_reading_of_a_qos1_persistent_session() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Mosquitto's default in-flight window (20 unacknowledged messages per client) meets the
    // source's default `max_unacked` (20): a checkpoint is asked for each time it fills. The
    // queue of messages waiting for the window is unbounded, so the broker drops none while Eddy
    // is down.
    let (_broker, port, _) = common::mosquitto::private(dir.path(), "max_queued_messages 0\n");
    let out = dir.path().join("alerts.jsonl");
    let query = dir.path().join("q.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (device_id TEXT, seq BIGINT, ts TIMESTAMP,
                WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
               WITH (connector = 'mqtt', url = 'mqtt://127.0.0.1:{port}', topic = 'kill/reading',
                     qos = 1, clean_session = false, client_id = 'eddy-kill-test',
                     linger = '5ms');
             CREATE SINK alerts WITH (connector = 'file', path = '{}', alert_id = 'true');
             INSERT INTO alerts
             SELECT device_id, window_start, count(*) AS n, sum(seq) AS s
             FROM TUMBLE(readings, ts, INTERVAL '1' SECOND)
             GROUP BY device_id, window_start, window_end;",
            out.display()
        ),
    )
    .expect("query written");
    let state = dir.path().join("state");
    let args = [
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--checkpoint-interval",
        "200ms",
    ];
    let eddy = common::run_with_until_logged(&query, &args, "subscribed to");

    let ts = |seq: u64| T0 + seq as i64 * 10;
    let publisher = tokio::spawn(publish(port, "kill-pub", 0, READINGS, ts));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // SIGKILL: readings received since the last checkpoint were never acknowledged.
    drop(eddy);
    let killed_with = windows(&out).len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = common::run_with_until_logged(&query, &args, "subscribed to");
    publisher.await.expect("published");
    // One reading per device a minute later closes every window.
    publish(port, "kill-pub-end", READINGS, READINGS + 2, |_| {
        ts(READINGS) + 60_000
    })
    .await;

    // Every window of 1 s holds 100 readings, 50 of each device.
    let mut expected = BTreeSet::new();
    for w in 0..(READINGS / 100) {
        for d in 0..2 {
            let seqs: Vec<u64> = (w * 100..(w + 1) * 100).filter(|s| s % 2 == d).collect();
            let start = chrono::DateTime::from_timestamp_millis(ts(w * 100))
                .expect("a time")
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            expected.insert((format!("m{d}"), start, 50, seqs.iter().sum::<u64>()));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = windows(&out);
    while !expected.is_subset(&got) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        got = windows(&out);
    }
    drop(restarted);
    let missing: Vec<_> = expected.difference(&got).take(5).collect();
    let wrong: Vec<_> = got
        .difference(&expected)
        .filter(|(_, start, _, _)| start.as_str() < "2026-01-01T00:01")
        .take(5)
        .collect();
    assert!(killed_with > 0, "the kill came before any window had fired");
    assert!(
        missing.is_empty() && wrong.is_empty(),
        "{} of {} windows missing (first {missing:?}), wrong windows {wrong:?}",
        expected.difference(&got).count(),
        expected.len()
    );
}
