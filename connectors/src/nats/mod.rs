//! NATS (async-nats): a source reading a JetStream stream through a durable consumer (or a plain
//! subscription) and a sink publishing each row to a subject made from a template, with or
//! without JetStream's acknowledgements.

pub mod config;
mod hub;
mod sink;
mod source;

use std::path::PathBuf;

use async_nats::{Client, ConnectOptions};
use eddy_engine::{ConnectorError, OptionError};
use tokio::sync::mpsc;

pub use sink::NatsSink;
pub use source::NatsSource;

/// How to reach and authenticate to the server.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    urls: Vec<String>,
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
    ca_file: Option<PathBuf>,
}

impl Server {
    fn new(
        url: &str,
        username: Option<&str>,
        password: Option<&str>,
        password_env: Option<&str>,
        token_env: Option<&str>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, OptionError> {
        let urls: Vec<String> = url
            .split(',')
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        for u in &urls {
            u.parse::<async_nats::ServerAddr>().map_err(|e| {
                OptionError::invalid("url", format!("'{u}' is not a NATS server address: {e}"))
            })?;
        }
        if urls.is_empty() {
            return Err(OptionError::invalid(
                "url",
                "give the server: nats://host:4222",
            ));
        }
        let env = |option: &str, var: &str| {
            std::env::var(var).map_err(|_| {
                OptionError::invalid(option, format!("environment variable {var} is not set"))
            })
        };
        let password = match (password, password_env) {
            (Some(p), _) => Some(p.to_string()),
            (None, Some(var)) => Some(env("password_env", var)?),
            (None, None) => None,
        };
        let token = token_env.map(|var| env("token_env", var)).transpose()?;
        Ok(Self {
            urls,
            username: username.map(str::to_string),
            password,
            token,
            ca_file: ca_file.map(std::path::Path::to_path_buf),
        })
    }

    pub(crate) fn address(&self) -> String {
        self.urls.join(",")
    }

    /// Connects as `name`; the client reconnects by itself after that, and reports connections
    /// and disconnections on `events`.
    pub(crate) async fn connect(
        &self,
        name: &str,
        events: mpsc::UnboundedSender<async_nats::Event>,
    ) -> Result<Client, ConnectorError> {
        let mut options = ConnectOptions::new()
            .name(format!("eddy-{name}"))
            .event_callback(move |e| {
                let events = events.clone();
                async move {
                    let _ = events.send(e);
                }
            });
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            options = options.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &self.token {
            options = options.token(t.clone());
        }
        if let Some(ca) = &self.ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let addresses: Vec<async_nats::ServerAddr> =
            self.urls.iter().filter_map(|u| u.parse().ok()).collect();
        options.connect(addresses).await.map_err(|e| {
            ConnectorError::retryable(format!("cannot connect to NATS at {}: {e}", self.address()))
        })
    }
}
