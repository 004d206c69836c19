//! Sends alerts to an HTTP endpoint as JSON: one object per request, or arrays of up to
//! `batch_size`. Server errors, 429 (after its `Retry-After`) and timeouts are tried again; a
//! request refused with another 4xx sends its alerts to the dead letters with the status and body.
//! A retried batch resumes after the alerts already delivered, so none is sent twice by a retry.

use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Sink, SinkSpec};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

use super::config::WebhookSinkConfig;
use crate::format::json::encode_rows;
use crate::part_written::PartWritten;

/// The longest a `Retry-After` is waited for before the request is tried again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

pub struct WebhookSink {
    url: reqwest::Url,
    method: reqwest::Method,
    batch_size: usize,
    linger: Duration,
    client: reqwest::Client,
    signing_key: Option<Vec<u8>>,
    /// Alerts not sent yet (with `batch_size` over 1, a partial batch waits for more), and since
    /// when the oldest waits.
    waiting: Vec<Alert>,
    waiting_since: Option<Instant>,
    /// Where a failed write stopped, for its retry.
    part_written: PartWritten,
}

/// One alert as a JSON object, with its `alert_id` and its row in the batch being written
/// (`None` for a row of an earlier batch that waited for a full request).
struct Alert {
    json: Vec<u8>,
    id: Option<String>,
    row: Option<usize>,
}

impl WebhookSink {
    pub fn create(spec: &SinkSpec) -> Result<Box<dyn Sink>, OptionError> {
        let config: WebhookSinkConfig = spec.options.deserialize()?;
        let url = reqwest::Url::parse(&config.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                OptionError::invalid(
                    "url",
                    format!("'{}' is not an http:// or https:// URL", config.url),
                )
            })?;
        let method = match config.method.to_ascii_uppercase().as_str() {
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            other => {
                return Err(OptionError::invalid(
                    "method",
                    format!("'{other}': alerts are sent with POST or PUT"),
                ));
            }
        };
        if config.batch_size == 0 {
            return Err(OptionError::invalid("batch_size", "must be at least 1"));
        }
        let headers = parse_headers(config.headers.as_deref().unwrap_or_default())
            .map_err(|m| OptionError::invalid("headers", m))?;
        let signing_key = match &config.signing_secret_env {
            Some(var) => Some(
                std::env::var(var)
                    .map_err(|_| {
                        OptionError::invalid(
                            "signing_secret_env",
                            format!("environment variable {var} is not set"),
                        )
                    })?
                    .into_bytes(),
            ),
            None => None,
        };
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .default_headers(headers)
            .build()
            .map_err(|e| OptionError::Other(format!("cannot build the HTTP client: {e}")))?;
        Ok(Box::new(Self {
            url,
            method,
            batch_size: config.batch_size,
            linger: config.linger,
            client,
            signing_key,
            waiting: Vec::new(),
            waiting_since: None,
            part_written: PartWritten::default(),
        }))
    }

    /// Sends one request of `alerts`; `Ok(None)` when delivered, `Ok(Some(reason))` when the
    /// endpoint refused them for good (a 4xx), `Err` when trying again may help.
    async fn send(&self, alerts: &[Alert]) -> Result<Option<String>, ConnectorError> {
        let body = if self.batch_size == 1 {
            alerts.first().map(|a| a.json.clone()).unwrap_or_default()
        } else {
            let mut body = Vec::with_capacity(alerts.iter().map(|a| a.json.len() + 1).sum());
            body.push(b'[');
            for (i, a) in alerts.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&a.json);
            }
            body.push(b']');
            body
        };
        let mut request = self
            .client
            .request(self.method.clone(), self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(key) = &self.signing_key {
            request = request.header("X-Eddy-Signature", signature(key, &body));
        }
        if let [Alert { id: Some(id), .. }] = alerts
            && self.batch_size == 1
        {
            request = request.header("Idempotency-Key", id.as_str());
        }
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                return Err(ConnectorError::retryable(format!(
                    "request to {} {what}: {e}",
                    self.url
                )));
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(None);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(500).collect();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            if let Some(wait) = retry_after {
                tokio::time::sleep(wait.min(MAX_RETRY_AFTER)).await;
            }
            return Err(ConnectorError::retryable(format!(
                "{} answered {status}: {text}",
                self.url
            )));
        }
        Ok(Some(format!("{} answered {status}: {text}", self.url)))
    }

    /// Sends the waiting alerts in requests of `batch_size` (the last partial one too when
    /// `all`). Rows of the batch being written that the endpoint refused for good are added to
    /// `refused`; on a failure worth a retry, the alerts not delivered stay waiting and the error
    /// is returned.
    async fn send_waiting(
        &mut self,
        all: bool,
        refused: &mut Vec<(usize, String)>,
    ) -> Result<(), ConnectorError> {
        let mut sent = 0;
        while self.waiting.len() - sent >= self.batch_size || (all && sent < self.waiting.len()) {
            let end = (sent + self.batch_size).min(self.waiting.len());
            match self.send(&self.waiting[sent..end]).await {
                Ok(None) => {}
                Ok(Some(reason)) => {
                    let earlier = self.waiting[sent..end]
                        .iter()
                        .filter(|a| a.row.is_none())
                        .count();
                    if earlier > 0 {
                        tracing::error!(
                            "{earlier} alerts written with an earlier batch were refused and are lost: {reason}"
                        );
                    }
                    refused.extend(
                        self.waiting[sent..end]
                            .iter()
                            .filter_map(|a| a.row.map(|r| (r, reason.clone()))),
                    );
                }
                Err(e) => {
                    self.waiting.drain(..sent);
                    return Err(e);
                }
            }
            sent = end;
        }
        self.waiting.drain(..sent);
        if self.waiting.is_empty() {
            self.waiting_since = None;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for WebhookSink {
    fn describe(&self) -> String {
        let batches = if self.batch_size == 1 {
            "one JSON object per request".to_string()
        } else {
            format!("JSON arrays of up to {} alerts", self.batch_size)
        };
        let signed = if self.signing_key.is_some() {
            ", signed"
        } else {
            ""
        };
        format!("{} {} ({batches}{signed})", self.method, self.url)
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        // The same batch again after a failure worth a retry: resume after what was delivered.
        let from = self.part_written.resume(&batch);
        let lines = encode_rows(&batch).map_err(|e| ConnectorError::fatal(e.to_string()))?;
        let ids = batch
            .column_by_name("alert_id")
            .and_then(|c| c.as_string_opt::<i32>().cloned());
        for a in &mut self.waiting {
            a.row = None;
        }
        if self.waiting.is_empty() {
            self.waiting_since = Some(Instant::now());
        }
        let alerts = lines
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
            .skip(from)
            .map(|(i, line)| Alert {
                json: line.to_vec(),
                id: ids
                    .as_ref()
                    .filter(|a| a.is_valid(i))
                    .map(|a| a.value(i).to_string()),
                row: Some(i),
            });
        self.waiting.extend(alerts);
        let linger_over = self
            .waiting_since
            .is_some_and(|since| since.elapsed() >= self.linger);
        let mut refused = Vec::new();
        if let Err(e) = self.send_waiting(linger_over, &mut refused).await {
            // What of this batch is not delivered is sent again with the retry; rows of earlier
            // batches keep waiting.
            if let Some(first) = self.waiting.iter().find_map(|a| a.row) {
                self.part_written.failed(&batch, first);
            }
            self.waiting.retain(|a| a.row.is_none());
            return Err(e);
        }
        match refused.first() {
            None => Ok(()),
            Some((_, reason)) => Err(ConnectorError::fatal(reason.clone())
                .with_rows(refused.iter().map(|(r, _)| *r).collect())),
        }
    }

    /// The alerts waiting for a full batch go out.
    async fn flush(&mut self) -> Result<(), ConnectorError> {
        for a in &mut self.waiting {
            a.row = None;
        }
        self.send_waiting(true, &mut Vec::new()).await
    }
}

/// `Name: value; Name: value` as headers.
fn parse_headers(text: &str) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once(':')
            .ok_or_else(|| format!("'{part}' is not 'Name: value'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("'{}' is not a header name", name.trim()))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of header {name} is not valid"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// `sha256=<hex HMAC-SHA256 of body>`.
fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_signatures() {
        let h = parse_headers("Authorization: Bearer abc; X-Team: ops").expect("headers");
        assert_eq!(h["authorization"], "Bearer abc");
        assert_eq!(h["x-team"], "ops");
        assert!(parse_headers("no colon").is_err());
        // The example of GitHub's webhook documentation.
        assert_eq!(
            signature(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
