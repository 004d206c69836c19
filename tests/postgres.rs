//! The PostgreSQL connector against the machine's PostgreSQL (127.0.0.1:5432, database `test`,
//! trust authentication; `.ci/run` starts it when it is down): alerts land in a table created from
//! their columns, a replay of the same input adds none (an upsert on `alert_id`), a connection
//! killed while alerts flow loses none, and per-device limits come from a PostgreSQL table.
//! Each test uses tables of its own, named after the process and the test.

mod common;

use std::time::{Duration, Instant};

use eddy_connectors::mqtt::EmbeddedBroker;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio_postgres::NoTls;

const URL: &str = "postgres://127.0.0.1:5432/test";

async fn database() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&format!("{URL}?user=postgres"), NoTls)
        .await
        .or(tokio_postgres::connect(URL, NoTls).await)
        .expect("PostgreSQL must listen on 127.0.0.1:5432 with a database `test` (pg_ctlcluster ... start)");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn table_name(test: &str) -> String {
    format!("eddy_{test}_{}", std::process::id())
}

/// Readings of 4 devices, one a second for a minute: 24 windows of 10 s with 10 readings each.
fn readings(dir: &std::path::Path) {
    let mut lines = Vec::new();
    for s in 0..60i64 {
        for d in 0..4i64 {
            lines.push(format!(
                r#"{{"device_id":"m{d}","temp":{},"ts":{}}}"#,
                20 + (s + d) % 7,
                1_767_225_600_000i64 + s * 1000
            ));
        }
    }
    std::fs::write(dir.join("readings.jsonl"), lines.join("\n")).expect("readings written");
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_land_once_in_a_created_table_even_when_replayed() {
    let db = database().await;
    let table = table_name("alerts");
    db.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await
        .expect("dropped");
    let dir = tempfile::tempdir().expect("temp dir");
    readings(dir.path());
    std::fs::write(
        dir.path().join("q.sql"),
        format!(
            "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                                     WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'file', path = 'readings.jsonl');
             CREATE SINK db WITH (connector = 'postgres', url = '{URL}', table = '{table}',
                                  create_table = 'true', alert_id = 'true');
             INSERT INTO db
             SELECT device_id, window_start, count(*) AS n, avg(temp) AS avg_temp
             FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
             GROUP BY device_id, window_start, window_end;"
        ),
    )
    .expect("query written");
    for run in 0..2 {
        let path = dir.path().to_path_buf();
        let out = tokio::task::spawn_blocking(move || {
            common::run_eddy(&path, &["run", "q.sql", "--quiet"], &[])
        })
        .await
        .expect("eddy ran");
        assert!(
            out.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rows = db
        .query(
            &format!(
                "SELECT device_id, extract(epoch from window_start)::bigint, n, avg_temp FROM {table} ORDER BY 1, 2"
            ),
            &[],
        )
        .await
        .expect("rows");
    assert_eq!(rows.len(), 24, "4 devices, 6 windows, each once");
    for row in &rows {
        let device: String = row.get(0);
        let start: i64 = row.get(1);
        let n: i64 = row.get(2);
        let avg: f64 = row.get(3);
        let d: i64 = device[1..].parse().expect("m<n>");
        let s0 = start - 1_767_225_600;
        let expected: f64 = (s0..s0 + 10)
            .map(|s| (20 + (s + d) % 7) as f64)
            .sum::<f64>()
            / 10.0;
        assert_eq!(n, 10);
        assert!(
            (avg - expected).abs() < 1e-9,
            "{device} at {start}: {avg} != {expected}"
        );
    }
    db.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .expect("dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_killed_while_alerts_flow_loses_none() {
    let db = database().await;
    let table = table_name("killed");
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (device_id text, window_start timestamptz, n bigint, alert_id text PRIMARY KEY)"
    ))
    .await
    .expect("created");
    let broker = EmbeddedBroker::start().await.expect("broker");
    let port = broker.port();
    let dir = tempfile::tempdir().expect("temp dir");
    let query = dir.path().join("q.sql");
    let sink = format!("db_{}", std::process::id());
    std::fs::write(
        &query,
        format!(
            "CREATE SOURCE readings (device_id TEXT, seq BIGINT, ts TIMESTAMP,
                                     WATERMARK FOR ts AS ts - INTERVAL '0' SECOND)
               WITH (connector = 'mqtt', url = 'mqtt://127.0.0.1:{port}', topic = 'pg/{table}',
                     qos = 1);
             CREATE SINK {sink} WITH (connector = 'postgres', url = '{URL}', table = '{table}',
                                     alert_id = 'true', retry_backoff = '50ms');
             INSERT INTO {sink}
             SELECT device_id, window_start, count(*) AS n
             FROM TUMBLE(readings, ts, INTERVAL '1' SECOND)
             GROUP BY device_id, window_start, window_end;"
        ),
    )
    .expect("query written");
    let eddy = common::run_until_logged(&query, "subscribed to");
    let mut options = MqttOptions::new(format!("pg-pub-{table}"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (publisher, mut events) = AsyncClient::new(options, 1000);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    // 40 windows of one second (event time), 5 readings each, over about 4 seconds.
    let started = Instant::now();
    let mut killed = 0u64;
    for seq in 0..200i64 {
        let payload = format!(
            r#"{{"device_id":"m1","seq":{seq},"ts":{}}}"#,
            1_767_225_600_000i64 + seq * 200
        );
        publisher
            .publish(format!("pg/{table}"), QoS::AtLeastOnce, false, payload)
            .await
            .expect("published");
        tokio::time::sleep(Duration::from_millis(20)).await;
        if seq == 100 {
            // The sink's connection, killed by the server while alerts flow.
            let row = db
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                    &[&format!("eddy sink {sink}")],
                )
                .await
                .expect("terminated");
            killed = row.get::<_, i64>(0) as u64;
        }
    }
    // A reading past the last window closes it.
    publisher
        .publish(
            format!("pg/{table}"),
            QoS::AtLeastOnce,
            false,
            r#"{"device_id":"m1","seq":999,"ts":1767225700000}"#,
        )
        .await
        .expect("published");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut count = 0i64;
    while Instant::now() < deadline {
        count = db
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("counted")
            .get(0);
        if count >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(eddy);
    assert_eq!(killed, 1, "the sink's connection was found and killed");
    assert!(started.elapsed() > Duration::from_secs(3));
    let full: i64 = db
        .query_one(&format!("SELECT count(*) FROM {table} WHERE n = 5"), &[])
        .await
        .expect("counted")
        .get(0);
    assert_eq!(
        (count, full),
        (40, 40),
        "every window once, each with its 5 readings"
    );
    db.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .expect("dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_device_limits_come_from_a_postgres_table() {
    let db = database().await;
    let table = table_name("limits");
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (device_id text, max_temp double precision, site text);
         INSERT INTO {table} VALUES ('m0', 24, 'north'), ('m1', 30, 'north'), ('m2', 22.5, 'south')"
    ))
    .await
    .expect("created");
    let dir = tempfile::tempdir().expect("temp dir");
    readings(dir.path());
    std::fs::write(
        dir.path().join("q.sql"),
        format!(
            "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                                     WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'file', path = 'readings.jsonl');
             CREATE TABLE limits (device_id TEXT, max_temp DOUBLE)
               WITH (connector = 'postgres', url = '{URL}', table = '{table}');
             CREATE SINK out WITH (connector = 'file', path = 'out.jsonl', mode = 'truncate');
             INSERT INTO out
             SELECT r.device_id, r.temp, l.max_temp
             FROM readings r JOIN limits l ON r.device_id = l.device_id
             WHERE r.temp > l.max_temp;"
        ),
    )
    .expect("query written");
    let path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        common::run_eddy(&path, &["run", "q.sql", "--quiet"], &[])
    })
    .await
    .expect("eddy ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // temp = 20 + (s + d) % 7 for s in 0..60: over its limit m0 (24) at 25 and 26, never m1 (30),
    // m2 (22.5) at 23 to 26; m3 has no limit.
    let mut expected = Vec::new();
    for (d, limit) in [(0i64, 24.0), (1, 30.0), (2, 22.5)] {
        for s in 0..60i64 {
            let temp = (20 + (s + d) % 7) as f64;
            if temp > limit {
                expected.push(format!(
                    r#"{{"device_id":"m{d}","temp":{temp:?},"max_temp":{limit:?}}}"#
                ));
            }
        }
    }
    let actual = std::fs::read_to_string(dir.path().join("out.jsonl")).expect("output");
    common::compare_rows(&actual, &expected.join("\n"), 0.0).unwrap_or_else(|d| panic!("{d}"));
    db.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .expect("dropped");
}
