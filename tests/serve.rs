//! `eddy serve` over real HTTP, its rules reading the Mosquitto on 127.0.0.1:1883 at QoS 1: a rule
//! registered, refused (bad SQL at the rule's own line, a name taken, no token, a wrong one),
//! replaced, paused while readings keep coming (none lost: its session keeps them), resumed,
//! found again after the service restarts, deleted; every change in the audit trail with the
//! name of the token that made it.

mod common;

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};

use common::service::{Client, Service, TOKEN};

fn alerts(dir: &Path) -> Vec<Value> {
    common::windows::read_alerts(&dir.join("alerts.jsonl"))
}

async fn publish(publisher: &AsyncClient, topic: &str, device: &str, temp: f64) {
    publisher
        .publish(
            topic,
            QoS::AtLeastOnce,
            false,
            json!({"device_id": device, "temp": temp}).to_string(),
        )
        .await
        .expect("published");
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_are_registered_replaced_paused_and_deleted_over_http() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = std::process::id();
    let topic = format!("serve-{id}/readings");
    common::service::prepare(
        dir.path(),
        &format!(
            "CREATE SOURCE readings (device_id TEXT, temp DOUBLE)
               WITH (connector = 'mqtt', url = 'mqtt://127.0.0.1:1883', topic = '{topic}',
                     qos = 1, client_id = 'eddy-serve-{id}', clean_session = 'false');
             CREATE SINK alerts WITH (connector = 'file', path = 'alerts.jsonl');
"
        ),
    );
    let service = Service::start(dir.path());
    let client = Client {
        http: reqwest::Client::new(),
        url: service.url.clone(),
    };

    // Health needs no token; everything else does.
    let health = reqwest::get(format!("{}/health", client.url))
        .await
        .expect("answers");
    assert_eq!(health.status(), StatusCode::OK);
    let anonymous = reqwest::get(format!("{}/api/rules", client.url))
        .await
        .expect("answers");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = client
        .http
        .get(format!("{}/api/rules", client.url))
        .bearer_auth("0123456789abcdef-opx")
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // Bad SQL: the error at the rule's own line and column.
    let (status, body) = client
        .send(
            reqwest::Method::POST,
            "/api/rules",
            Some(json!({"name": "hot", "sql": "INSERT INTO alerts\nSELECT device_id, tempp FROM readings;"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["line"], 2, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("tempp")),
        "{body}"
    );

    // A rule reaches only the files and variables the service allows.
    for (sql, option) in [
        (
            "CREATE SINK mine WITH (connector = 'file', path = '/etc/eddy-stolen.jsonl');\nINSERT INTO mine SELECT * FROM readings;",
            "option 'path'",
        ),
        (
            "CREATE SINK mine WITH (connector = 'file', path = 'allowed/../../x.jsonl');\nINSERT INTO mine SELECT * FROM readings;",
            "option 'path'",
        ),
        (
            "CREATE SINK mine WITH (connector = 'file', path = 'allowed/${EDDY_SERVE_TEST_LEVEL}/../../x.jsonl');\nINSERT INTO mine SELECT * FROM readings;",
            "option 'path'",
        ),
        (
            "CREATE SINK mine WITH (connector = 'file', path = 'allowed/${HOME}.jsonl');\nINSERT INTO mine SELECT * FROM readings;",
            "HOME",
        ),
        (
            "CREATE SINK mine WITH (connector = 'webhook', url = 'http://127.0.0.1:9/', signing_secret_env = 'PATH');\nINSERT INTO mine SELECT * FROM readings;",
            "option 'signing_secret_env'",
        ),
    ] {
        let (status, body) = client
            .send(
                reqwest::Method::POST,
                "/api/rules",
                Some(json!({"name": "sneaky", "sql": sql})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains(option)),
            "{body}"
        );
        assert_eq!(body["errors"][0]["line"], 1, "{body}");
    }
    let (status, body) = client
        .send(
            reqwest::Method::POST,
            "/api/rules",
            Some(json!({"name": "allowed", "sql": "CREATE SINK mine WITH (connector = 'file', path = 'allowed/${EDDY_SERVE_TEST_LEVEL}.jsonl');\nINSERT INTO mine SELECT * FROM readings;"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = client
        .send(reqwest::Method::DELETE, "/api/rules/allowed", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, body) = client
        .send(
            reqwest::Method::POST,
            "/api/rules",
            Some(json!({"name": "hot", "sql": "INSERT INTO alerts SELECT device_id, temp FROM readings WHERE temp > 80;"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(body["state"], "running");
    let (status, _) = client
        .send(
            reqwest::Method::POST,
            "/api/rules",
            Some(json!({"name": "hot", "sql": "INSERT INTO alerts SELECT device_id, temp FROM readings;"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The live stream of the rule's alerts, read as it comes.
    let mut stream = client
        .http
        .get(format!("{}/api/alerts/stream?rule=hot", client.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the stream answers");
    assert_eq!(stream.status(), StatusCode::OK);
    let streamed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let into = std::sync::Arc::clone(&streamed);
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = stream.chunk().await {
            if let Ok(mut text) = into.lock() {
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
        }
    });

    let mut options = MqttOptions::new(format!("serve-publisher-{id}"), "127.0.0.1", 1883);
    options.set_keep_alive(Duration::from_secs(30));
    let (publisher, mut events) = AsyncClient::new(options, 100);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    // Readings until the first alert shows the rule reads them.
    for _ in 0..100 {
        publish(&publisher, &topic, "boiler-1", 85.0).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !alerts(dir.path()).is_empty() {
            break;
        }
    }
    assert!(!alerts(dir.path()).is_empty(), "the rule alerts");
    common::wait_until(
        "the alert on the live stream",
        Duration::from_secs(10),
        || {
            streamed.lock().is_ok_and(|t| {
                t.contains("event: alert")
                    && t.contains(r#""rule":"hot""#)
                    && t.contains(r#""device_id":"boiler-1""#)
            })
        },
    );

    let (_, body) = client
        .send(reqwest::Method::GET, "/api/rules/hot", None)
        .await;
    assert!(
        body["counters"]["last_alert"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some(),
        "the time of the last alert: {body}"
    );

    // A new version: a higher threshold, planned before the old one stops.
    let (status, body) = client
        .send(
            reqwest::Method::PUT,
            "/api/rules/hot",
            Some(json!({"sql": "INSERT INTO alerts SELECT device_id, temp FROM readings WHERE temp > 90;"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    assert_eq!(
        body["state_kept"], true,
        "a new condition keeps the rule's state and place: {body}"
    );
    let (status, body) = client
        .send(
            reqwest::Method::PUT,
            "/api/rules/hot",
            Some(json!({"sql": "INSERT INTO alerts SELECT nothing FROM readings;"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, body) = client
        .send(reqwest::Method::GET, "/api/rules/hot", None)
        .await;
    assert_eq!(
        body["version"], 2,
        "a bad version leaves the old one: {body}"
    );
    assert_eq!(body["state"], "running");
    assert!(
        body["sql"]
            .as_str()
            .is_some_and(|s| s.contains("temp > 90")),
        "{body}"
    );

    // Paused, readings keep coming; resumed, none is lost (the broker kept them).
    let (status, body) = client
        .send(reqwest::Method::POST, "/api/rules/hot/pause", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "paused");
    let before = alerts(dir.path()).len();
    for n in 0..5 {
        publish(&publisher, &topic, &format!("paused-{n}"), 95.0).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        alerts(dir.path()).len(),
        before,
        "a paused rule writes nothing"
    );
    let (status, body) = client
        .send(reqwest::Method::POST, "/api/rules/hot/resume", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "running");
    common::wait_until(
        "the readings sent while paused",
        Duration::from_secs(20),
        || {
            let got = alerts(dir.path());
            (0..5).all(|n| got.iter().any(|a| a["device_id"] == format!("paused-{n}")))
        },
    );

    // The counters, as Prometheus reads them: the resumed engine's, so the 5 readings sent
    // while it was paused, and the 2 requests refused above.
    let text = client
        .http
        .get(format!("{}/metrics", client.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let value = |name: &str, labels: &[(&str, &str)]| common::service::metric(&text, name, labels);
    let rule = [("rule", "hot"), ("source", "readings")];
    assert_eq!(
        value("eddy_source_events_total", &rule),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        value("eddy_rule_rows_out_total", &[("rule", "hot")]),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        value("eddy_rules", &[("state", "running")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value("eddy_http_unauthorized_total", &[]),
        Some(2.0),
        "{text}"
    );

    // The service restarted: the rule is back, at its version, running.
    service.stop();
    let service = Service::start(dir.path());
    let client = Client {
        http: reqwest::Client::new(),
        url: service.url.clone(),
    };
    let (_, body) = client.send(reqwest::Method::GET, "/api/rules", None).await;
    assert_eq!(body[0]["name"], "hot", "{body}");
    assert_eq!(body[0]["version"], 2);
    assert_eq!(body[0]["state"], "running");
    let (_, body) = client
        .send(reqwest::Method::GET, "/api/rules/hot/versions", None)
        .await;
    assert_eq!(body.as_array().map(Vec::len), Some(2), "{body}");

    let (status, _) = client
        .send(reqwest::Method::DELETE, "/api/rules/hot", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = client
        .send(reqwest::Method::GET, "/api/rules/hot", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, trail) = client.send(reqwest::Method::GET, "/api/audit", None).await;
    let actions: Vec<(&str, &str)> = trail
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default(),
                e["who"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("create", "ops"),
            ("delete", "ops"),
            ("create", "ops"),
            ("replace", "ops"),
            ("pause", "ops"),
            ("resume", "ops"),
            ("delete", "ops")
        ]
    );
    service.stop();
}

/// `/api/openapi.json` describes the routes the service answers, every one of them: each path and
/// method it lists is routed (a request is not answered 404 without a body, nor 405), and it
/// lists the routes of the API.
#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_description_is_the_routes_the_service_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    common::service::prepare(dir.path(), "");
    let service = Service::start(dir.path());
    let http = reqwest::Client::new();
    let text = http
        .get(format!("{}/api/openapi.json", service.url))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("a body");
    let spec: Value = serde_json::from_str(&text).expect("JSON");
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{spec}"
    );
    let paths = spec["paths"].as_object().expect("paths");
    let mut listed: Vec<String> = paths.keys().cloned().collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "/api/alerts/stream",
            "/api/audit",
            "/api/rules",
            "/api/rules/{name}",
            "/api/rules/{name}/pause",
            "/api/rules/{name}/resume",
            "/api/rules/{name}/versions",
            "/metrics",
            "/ready",
        ]
    );
    for (path, item) in paths {
        for method in item.as_object().expect("methods").keys() {
            let url = format!("{}{}", service.url, path.replace("{name}", "no-such-rule"));
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes())
                .expect("an HTTP method");
            let response = http
                .request(method.clone(), &url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("answers");
            let status = response.status();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if status == StatusCode::NOT_FOUND {
                let body = response.text().await.unwrap_or_default();
                assert!(body.contains("no rule"), "{method} {path} is not routed");
            }
        }
    }
    service.stop();
}

/// A rule that no longer plans when the service starts again (its catalog changed under it) is
/// shown failed with the reason, and the service serves on.
#[tokio::test(flavor = "multi_thread")]
async fn a_rule_that_no_longer_plans_after_a_restart_is_shown_failed_with_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = std::process::id();
    std::fs::write(dir.path().join("tokens"), format!("ops:{TOKEN}\n")).expect("tokens");
    std::fs::create_dir(dir.path().join("allowed")).expect("allowed dir");
    let catalog = |source: &str| {
        format!(
            "CREATE SOURCE {source} (device_id TEXT, temp DOUBLE)
               WITH (connector = 'mqtt', url = 'mqtt://127.0.0.1:1883', topic = 'serve-{id}/gone');
             CREATE SINK alerts WITH (connector = 'file', path = 'alerts.jsonl');
"
        )
    };
    std::fs::write(dir.path().join("catalog.sql"), catalog("readings")).expect("catalog");
    let service = Service::start(dir.path());
    let client = Client {
        http: reqwest::Client::new(),
        url: service.url.clone(),
    };
    let (status, body) = client
        .send(
            reqwest::Method::POST,
            "/api/rules",
            Some(json!({"name": "hot", "sql": "INSERT INTO alerts SELECT device_id, temp FROM readings;"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    service.stop();

    std::fs::write(dir.path().join("catalog.sql"), catalog("measurements")).expect("catalog");
    let service = Service::start(dir.path());
    let client = Client {
        http: reqwest::Client::new(),
        url: service.url.clone(),
    };
    let (_, body) = client.send(reqwest::Method::GET, "/api/rules", None).await;
    assert_eq!(body[0]["state"], "failed", "{body}");
    assert!(
        body[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("readings")),
        "{body}"
    );
    let ready = client.send(reqwest::Method::GET, "/ready", None).await;
    assert_eq!(ready.0, StatusCode::SERVICE_UNAVAILABLE);
    service.stop();
}
