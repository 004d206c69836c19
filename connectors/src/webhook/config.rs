//! Options of the webhook sink: every field documented, unknown options refused.

#![deny(missing_docs)]

use std::time::Duration;

use eddy_engine::options::duration;
use serde::Deserialize;

/// `CREATE SINK ... WITH (connector = 'webhook', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// Where alerts are sent: `http://` or `https://` (an HTTP trigger of a serverless function,
    /// a chat or incident tool's incoming webhook).
    pub url: String,
    /// `POST` (the default) or `PUT`.
    #[serde(default = "default_method")]
    pub method: String,
    /// More headers, `Name: value` separated by `;` (`'Authorization: Bearer ${TOKEN}; X-Team:
    /// ops'`); secrets come from the environment through `${VAR}`.
    pub headers: Option<String>,
    /// Alerts per request: 1 sends each alert as one JSON object, more a JSON array of up to
    /// that many.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// With `batch_size` over 1, the longest a partial batch waits for more alerts.
    #[serde(default = "default_linger", deserialize_with = "duration")]
    pub linger: Duration,
    /// The longest a request may take; one that takes longer is tried again.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// The name of an environment variable holding a secret: every request then carries
    /// `X-Eddy-Signature: sha256=<hex HMAC-SHA256 of the body>`, as GitHub's webhooks do.
    pub signing_secret_env: Option<String>,
}

fn default_method() -> String {
    "POST".into()
}

fn default_batch_size() -> usize {
    1
}

fn default_linger() -> Duration {
    Duration::from_millis(200)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
