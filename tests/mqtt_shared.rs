//! Shared subscriptions (`share_group`, MQTT's `$share/<group>/<filter>`) against a private
//! Mosquitto (Debian's build), over MQTT 3.1.1 and MQTT 5: two Eddy processes in one group split
//! the readings between them, every reading reaching exactly one of them.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::mosquitto;
use rumqttc::{AsyncClient, MqttOptions, QoS};

async fn two_processes_in_one_group_split_the_readings(protocol: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_broker, port, _) = mosquitto::private(dir.path(), "");
    let mut running = Vec::new();
    let mut outputs = Vec::new();
    for n in 0..2 {
        let out = dir.path().join(format!("out{n}.jsonl"));
        let query = dir.path().join(format!("q{n}.sql"));
        std::fs::write(
            &query,
            format!(
                "CREATE SOURCE readings (seq BIGINT)
                   WITH (connector = 'mqtt', url = 'mqtt://127.0.0.1:{port}', topic = 'plant/+/seq',
                         share_group = 'eddy', qos = 1, protocol = '{protocol}');
                 CREATE SINK out WITH (connector = 'file', path = '{}');
                 INSERT INTO out SELECT seq FROM readings;",
                out.display()
            ),
        )
        .expect("query written");
        running.push(common::run_until_logged(&query, "subscribed to"));
        outputs.push(out);
    }
    let mut options = MqttOptions::new("shared-publisher", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (publisher, mut events) = AsyncClient::new(options, 1000);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    for seq in 0..200 {
        publisher
            .publish(
                format!("plant/m{}/seq", seq % 4),
                QoS::AtLeastOnce,
                false,
                format!(r#"{{"seq":{seq}}}"#),
            )
            .await
            .expect("published");
    }
    let read = |path: &std::path::Path| -> Vec<i64> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["seq"].as_i64())
            .collect()
    };
    common::wait_until("every reading", Duration::from_secs(20), || {
        outputs.iter().map(|o| read(o).len()).sum::<usize>() >= 200
    });
    drop(running);
    let (a, b) = (read(&outputs[0]), read(&outputs[1]));
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both got a share: {} and {}",
        a.len(),
        b.len()
    );
    let all: BTreeSet<i64> = a.iter().chain(&b).copied().collect();
    assert_eq!(a.len() + b.len(), 200, "none twice");
    assert_eq!(all, (0..200).collect::<BTreeSet<i64>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_subscription_splits_the_readings_over_mqtt_3_1_1() {
    two_processes_in_one_group_split_the_readings("v3.1.1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_subscription_splits_the_readings_over_mqtt_5() {
    two_processes_in_one_group_split_the_readings("v5").await;
}
