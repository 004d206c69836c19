//! The webhook sink against a real HTTP server (axum, in the test) that fails every third request
//! with 503, answers one with 429 and `Retry-After`, and is slow on the others: every alert is
//! delivered exactly once (a retry resends only what was not delivered), each request signed with
//! the HMAC-SHA256 of its body and keyed by the alert's id. Alerts the endpoint refuses with a
//! 4xx go to the sink's dead letters with the status and the body.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const SECRET: &str = "It's a Secret to Everybody";

/// A request the endpoint took (answered 2xx).
#[derive(Debug, Clone)]
struct Delivered {
    body: String,
    signature: Option<String>,
    idempotency_key: Option<String>,
    team: Option<String>,
}

#[derive(Default)]
struct Endpoint {
    requests: usize,
    delivered: Vec<Delivered>,
}

async fn receive(
    State(endpoint): State<Arc<Mutex<Endpoint>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let body = String::from_utf8_lossy(&body).to_string();
    let n = {
        let mut e = endpoint.lock().expect("not poisoned");
        e.requests += 1;
        e.requests
    };
    if body.contains("\"device_id\":\"refused\"") {
        return (StatusCode::UNPROCESSABLE_ENTITY, "unknown device").into_response();
    }
    if n % 3 == 0 {
        return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
    }
    if n == 5 {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("Retry-After", "1")],
            "slow down",
        )
            .into_response();
    }
    tokio::time::sleep(Duration::from_millis(10 + (n as u64 * 37) % 90)).await;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    endpoint
        .lock()
        .expect("not poisoned")
        .delivered
        .push(Delivered {
            body,
            signature: header("x-eddy-signature"),
            idempotency_key: header("idempotency-key"),
            team: header("x-team"),
        });
    StatusCode::NO_CONTENT.into_response()
}

/// Starts the endpoint on a free port: its URL and what it received.
async fn endpoint() -> (String, Arc<Mutex<Endpoint>>) {
    let state = Arc::new(Mutex::new(Endpoint::default()));
    let app = Router::new()
        .route("/alerts", post(receive))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let url = format!(
        "http://{}/alerts",
        listener.local_addr().expect("an address")
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, state)
}

/// Readings of `devices` devices, one every second for a minute; the last device's are refused by
/// the endpoint when `refused` is set.
fn readings(dir: &std::path::Path, devices: usize, refused: bool) {
    let mut lines = Vec::new();
    for s in 0..60 {
        for d in 0..devices {
            let id = if refused && d == devices - 1 {
                "refused".to_string()
            } else {
                format!("m{d}")
            };
            lines.push(format!(
                r#"{{"device_id":"{id}","temp":{},"ts":{}}}"#,
                20 + (s + d) % 7,
                1_767_225_600_000i64 + s as i64 * 1000
            ));
        }
    }
    std::fs::write(dir.join("readings.jsonl"), lines.join("\n")).expect("readings written");
}

fn query(dir: &std::path::Path, url: &str, batch_size: usize) {
    std::fs::write(
        dir.join("q.sql"),
        format!(
            "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                                     WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'file', path = 'readings.jsonl');
             CREATE SINK hook WITH (connector = 'webhook', url = '{url}',
                                    headers = 'X-Team: ops', batch_size = '{batch_size}',
                                    signing_secret_env = 'WEBHOOK_SECRET', alert_id = 'true',
                                    dead_letter = 'refused.jsonl', retry_backoff = '50ms');
             INSERT INTO hook
             SELECT device_id, window_start, count(*) AS n, max(temp) AS max_temp
             FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
             GROUP BY device_id, window_start, window_end;"
        ),
    )
    .expect("query written");
}

fn signed(body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("a key");
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_alert_arrives_once_signed_and_keyed_through_failures() {
    let (url, endpoint) = endpoint().await;
    let dir = tempfile::tempdir().expect("temp dir");
    readings(dir.path(), 5, true);
    query(dir.path(), &url, 1);
    let path = dir.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        common::run_eddy(
            &path,
            &["run", "q.sql", "--quiet"],
            &[("WEBHOOK_SECRET", SECRET)],
        )
    })
    .await
    .expect("eddy ran");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let endpoint = endpoint.lock().expect("not poisoned");
    // 4 devices taken by the endpoint, 6 windows each; the fifth device's alerts are refused.
    let mut by_key: BTreeMap<String, Vec<&Delivered>> = BTreeMap::new();
    for d in &endpoint.delivered {
        let alert: serde_json::Value = serde_json::from_str(&d.body).expect("one JSON object");
        assert_eq!(
            d.signature.as_deref(),
            Some(signed(&d.body).as_str()),
            "signature"
        );
        assert_eq!(d.team.as_deref(), Some("ops"));
        assert_eq!(
            d.idempotency_key.as_deref(),
            alert["alert_id"].as_str(),
            "the Idempotency-Key is the alert's id"
        );
        assert_eq!(alert["n"], 10);
        by_key
            .entry(alert["alert_id"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(d);
    }
    assert_eq!(by_key.len(), 24, "alerts delivered: {}", by_key.len());
    let twice: Vec<_> = by_key.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert!(
        endpoint.requests >= 24 + 8,
        "every third request failed, so there were retries ({} requests)",
        endpoint.requests
    );
    let refused = std::fs::read_to_string(dir.path().join("refused.jsonl")).expect("dead letters");
    assert_eq!(refused.lines().count(), 6, "{refused}");
    assert!(
        refused.contains("422 Unprocessable Entity: unknown device"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_go_in_arrays_of_batch_size() {
    let (url, endpoint) = endpoint().await;
    let dir = tempfile::tempdir().expect("temp dir");
    readings(dir.path(), 5, false);
    query(dir.path(), &url, 4);
    let path = dir.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        common::run_eddy(
            &path,
            &["run", "q.sql", "--quiet"],
            &[("WEBHOOK_SECRET", SECRET)],
        )
    })
    .await
    .expect("eddy ran");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let endpoint = endpoint.lock().expect("not poisoned");
    let mut ids = Vec::new();
    for d in &endpoint.delivered {
        let array: Vec<serde_json::Value> =
            serde_json::from_str(&d.body).expect("a JSON array of alerts");
        assert!(
            !array.is_empty() && array.len() <= 4,
            "{} alerts",
            array.len()
        );
        assert_eq!(
            d.idempotency_key, None,
            "no key for a request of several alerts"
        );
        assert_eq!(d.signature.as_deref(), Some(signed(&d.body).as_str()));
        ids.extend(array.iter().map(|a| a["alert_id"].to_string()));
    }
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!((n, ids.len()), (30, 30), "5 devices, 6 windows, each once");
}
