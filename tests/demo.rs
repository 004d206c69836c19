//! `eddy demo`, the README's first command: its embedded broker, simulated machines and example
//! queries run as the rules of a service whose API it prints; the rules are listed running over
//! that API, and the overheat alerts of the machines that start hot are printed.

mod common;

use std::process::Stdio;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_prints_alerts_and_serves_its_rules() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("alerts.txt");
    let mut demo = common::Logged::spawn({
        let mut c = common::eddy();
        c.args(["demo", "--devices", "5", "--seconds", "35", "--quiet"])
            .args(["--http", "127.0.0.1:0"])
            .env("EDDY_LOG", "warn")
            .stdout(Stdio::from(
                std::fs::File::create(&out).expect("output file"),
            ));
        c
    });
    let started = demo.wait_for_line("Eddy demo:", Duration::from_secs(30));
    let api = started
        .split_whitespace()
        .find_map(|w| w.strip_prefix('(').filter(|u| u.starts_with("http://")))
        .and_then(|u| u.strip_suffix("/api/rules,"))
        .unwrap_or_else(|| panic!("no API address in: {started}"))
        .to_string();
    let text = reqwest::get(format!("{api}/api/rules"))
        .await
        .expect("the API answers")
        .text()
        .await
        .expect("a body");
    let rules: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let names: Vec<(&str, &str)> = rules
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default(),
                r["state"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(names, [("overheat", "running"), ("spikes", "running")]);
    let output = tokio::task::spawn_blocking(move || demo.wait())
        .await
        .expect("the demo ends");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let alerts = std::fs::read_to_string(&out).expect("alerts");
    assert!(
        alerts.lines().any(|l| l.contains("overheat  machine-00")),
        "{alerts}"
    );
}
