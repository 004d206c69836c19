//! A reference table is reloaded while the query runs: readings published over MQTT are checked
//! against a per-device limit from a CSV file; the file changes, and once the table's refresh has
//! passed, readings are checked against the new limit, without restarting anything.

mod common;

use std::time::{Duration, Instant};

use eddy_connectors::mqtt::EmbeddedBroker;
use rumqttc::{AsyncClient, MqttOptions, QoS};

fn write_limits(path: &std::path::Path, max_temp: f64) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("device_id,max_temp\nm-1,{max_temp}\n")).expect("limits written");
    std::fs::rename(&tmp, path).expect("limits replaced");
}

/// Waits until the output file holds `n` rows, and returns them.
async fn rows(path: &std::path::Path, n: usize) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = common::parse_lines(&std::fs::read_to_string(path).unwrap_or_default());
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reloaded_table_changes_the_limit_without_a_restart() {
    let broker = EmbeddedBroker::start()
        .await
        .expect("embedded broker starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = dir.path().join("limits.csv");
    let out = dir.path().join("out.jsonl");
    write_limits(&limits, 50.0);
    let url = broker.url();
    let query = dir.path().join("limits.sql");
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (device_id TEXT, temp DOUBLE)
               WITH (connector = 'mqtt', url = '{url}', topic = 'refresh/+/reading', qos = 1);
             CREATE TABLE limits (device_id TEXT, max_temp DOUBLE)
               WITH (connector = 'file', path = '{limits}', refresh = '100ms');
             CREATE SINK out WITH (connector = 'file', path = '{out}');
             INSERT INTO out
             SELECT r.device_id, r.temp, l.max_temp
             FROM readings r JOIN limits l ON r.device_id = l.device_id
             WHERE r.temp > l.max_temp;",
            limits = limits.display(),
            out = out.display()
        ),
    )
    .expect("query written");
    // Debug lines of the engine say when the table is reloaded.
    let mut command = common::eddy();
    command
        .args(["run", query.to_str().expect("utf-8 path"), "--quiet"])
        .env("EDDY_LOG", "info,eddy_engine=debug");
    let mut eddy = common::Logged::spawn(command);
    tokio::task::block_in_place(|| eddy.wait_for_line("subscribed to", Duration::from_secs(30)));

    let mut options = MqttOptions::new("refresh-publisher", "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (publisher, mut events) = AsyncClient::new(options, 100);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    let publish = |temp: f64| {
        let publisher = publisher.clone();
        async move {
            publisher
                .publish(
                    "refresh/m-1/reading",
                    QoS::AtLeastOnce,
                    false,
                    format!(r#"{{"device_id":"m-1","temp":{temp}}}"#),
                )
                .await
                .expect("published");
        }
    };

    publish(60.0).await;
    let first = rows(&out, 1).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["max_temp"], 50.0);

    write_limits(&limits, 70.0);
    // A reload logs before it puts its rows in place, and one may have read the old file: the
    // third reload logged after the write comes after the new limit is in place.
    tokio::task::block_in_place(|| {
        eddy.skip_logged();
        for _ in 0..3 {
            eddy.wait_for_line("reloaded", Duration::from_secs(10));
        }
    });
    publish(65.0).await;
    publish(75.0).await;
    let all = rows(&out, 2).await;
    // Nothing shows that no other row is coming: look again a little later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all_again = common::parse_lines(&std::fs::read_to_string(&out).unwrap_or_default());
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(
        all_again.len(),
        2,
        "65 is under the new limit: {all_again:?}"
    );
    assert_eq!(all[1]["temp"], 75.0);
    assert_eq!(all[1]["max_temp"], 70.0);
}
