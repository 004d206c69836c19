//! Webhooks: alerts sent to an HTTP endpoint as JSON (reqwest with rustls), signed with an
//! HMAC-SHA256 of the body when a secret is set, with an `Idempotency-Key` per alert.

pub mod config;
mod sink;

pub use sink::WebhookSink;
