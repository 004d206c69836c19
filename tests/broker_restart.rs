//! The broker restarts mid-stream: a private Mosquitto (on a free port, with persistence) is
//! stopped while Eddy runs, readings are published as soon as it is back, and Eddy — subscribed
//! at QoS 1 with a persistent session — reconnects and receives every one of them. Needs the
//! `mosquitto` binary (Debian's package), which this machine has; the test fails if it is missing.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

struct Mosquitto {
    child: Child,
}

impl Mosquitto {
    fn start(config: &std::path::Path) -> Self {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (apt install mosquitto)");
        Self { child }
    }

    /// SIGTERM: Mosquitto saves its sessions and queued messages, then exits.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // Mosquitto started as root runs as the user `mosquitto`: let it write its database here.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("permissions");
    }
    let config = dir.path().join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n",
            dir.path().display()
        ),
    )
    .expect("config written");
    let broker = Mosquitto::start(&config);
    wait_for_port(port);

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
