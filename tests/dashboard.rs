//! The dashboard in a real headless browser: Debian's Chromium driven by Playwright
//! (`tests/dashboard/dashboard.cjs`) against a running `eddy serve` whose catalog reads the
//! Mosquitto on 127.0.0.1:1883, while this test publishes readings: the page connects with a
//! token, registers a rule, shows it running and its alerts arriving live, shows a bad rule's
//! error at its line, and pauses the rule. Screenshots go to `target/dashboard-screenshots`.
//! `.ci/run` installs Chromium and playwright-core when missing (`EDDY_PLAYWRIGHT` names the
//! module); this test is `#[ignore]`d in the README's test command, which needs neither.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};

const TOKEN: &str = "dashboard-test-token-0123";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Chromium and playwright-core, which .ci/run installs"]
async fn the_dashboard_registers_a_rule_and_shows_its_alerts_live() {
    let playwright = std::env::var("EDDY_PLAYWRIGHT")
        .expect("EDDY_PLAYWRIGHT names the playwright-core module (.ci/run installs it)");
    let dir = tempfile::tempdir().expect("temp dir");
    let id = std::process::id();
    let topic = format!("dashboard-{id}/readings");
    std::fs::write(dir.path().join("tokens"), format!("ci:{TOKEN}\n")).expect("tokens");
    std::fs::write(
        dir.path().join("catalog.sql"),
        format!(
            "CREATE SOURCE readings (device_id TEXT, temp DOUBLE)
               WITH (connector = 'mqtt', url = 'mqtt://127.0.0.1:1883', topic = '{topic}');
             CREATE SINK alerts WITH (connector = 'file', path = 'alerts.jsonl');
"
        ),
    )
    .expect("catalog");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut service = common::Logged::spawn({
        let mut c = common::eddy();
        c.current_dir(dir.path())
            .args(["serve", "catalog.sql", "--state-dir", "state"])
            .args([
                "--http",
                &format!("127.0.0.1:{port}"),
                "--tokens-file",
                "tokens",
            ])
            .env("EDDY_LOG", "info")
            .stdout(Stdio::null());
        c
    });
    service.wait_for_line("listening on", Duration::from_secs(30));
    let _service = service.into_running();

    // Readings, some hot, until the browser is done.
    let done = Arc::new(AtomicBool::new(false));
    let publishing = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut options =
                MqttOptions::new(format!("dashboard-publisher-{id}"), "127.0.0.1", 1883);
            options.set_keep_alive(Duration::from_secs(30));
            let (publisher, mut events) = AsyncClient::new(options, 100);
            tokio::spawn(async move { while events.poll().await.is_ok() {} });
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                let temp = if n.is_multiple_of(3) { 91.5 } else { 60.0 };
                let reading = format!(r#"{{"device_id":"boiler-{}","temp":{temp}}}"#, n % 4);
                let _ = publisher
                    .publish(&topic, QoS::AtLeastOnce, false, reading)
                    .await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let shots =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/dashboard.cjs");
    let browser = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("EDDY_URL", format!("http://127.0.0.1:{port}"))
            .env("EDDY_TOKEN", TOKEN)
            .env("EDDY_PLAYWRIGHT", playwright)
            .env("SCREENSHOTS", &shots)
            .output()
            .expect("node runs")
    })
    .await
    .expect("the browser ran");
    done.store(true, Ordering::Relaxed);
    let _ = publishing.await;
    let stdout = String::from_utf8_lossy(&browser.stdout);
    let stderr = String::from_utf8_lossy(&browser.stderr);
    assert!(browser.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("every step passed"), "{stdout}\n{stderr}");
}
