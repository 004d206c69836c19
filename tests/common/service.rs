//! `eddy serve` run as a user runs it, and a client of its HTTP API.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

pub const TOKEN: &str = "0123456789abcdef-ops";

/// A directory for [`Service::start`]: its tokens file (one token, [`TOKEN`], named `ops`), the
/// directory rules may write to (`allowed`) and `catalog.sql`.
pub fn prepare(dir: &Path, catalog: &str) {
    std::fs::write(dir.join("tokens"), format!("ops:{TOKEN}\n")).expect("tokens");
    std::fs::create_dir(dir.join("allowed")).expect("allowed dir");
    std::fs::write(dir.join("catalog.sql"), catalog).expect("catalog");
}

/// `eddy serve` on a free port, killed when dropped.
pub struct Service {
    pub process: super::Running,
    pub url: String,
}

impl Service {
    pub fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut logged = super::Logged::spawn({
            let mut c = super::eddy();
            c.current_dir(dir)
                .args(["serve", "catalog.sql", "--state-dir", "state"])
                .args(["--http", &format!("127.0.0.1:{port}")])
                .args(["--tokens-file", "tokens", "--checkpoint-interval", "500ms"])
                .args([
                    "--allow-path",
                    "allowed",
                    "--allow-env",
                    "EDDY_SERVE_TEST_LEVEL",
                ])
                .env("EDDY_SERVE_TEST_LEVEL", "80")
                .env("EDDY_LOG", "info")
                .stdout(Stdio::null());
            c
        });
        logged.wait_for_line("listening on", Duration::from_secs(30));
        Self {
            process: logged.into_running(),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// SIGTERM, and waits for the service to stop its rules and exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.process.0.id().to_string()])
            .status();
        let status = self.process.0.wait().expect("exits");
        assert!(status.success(), "eddy serve exited with {status}");
    }
}

pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
}

impl Client {
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("the service answers");
        let status = response.status();
        let text = response.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// The value of series `name` with `labels` in Prometheus text `text`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the Prometheus text format");
    scrape.samples.iter().find_map(|s| {
        let matches = s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
        match (matches, &s.value) {
            (true, prometheus_parse::Value::Counter(v))
            | (true, prometheus_parse::Value::Gauge(v))
            | (true, prometheus_parse::Value::Untyped(v)) => Some(*v),
            _ => None,
        }
    })
}
