//! Publishes each row to the subject its template gives. Plain NATS: published, and flushed to the
//! server before a checkpoint completes. JetStream: every alert of a write is published at once,
//! then the server's acknowledgements are awaited; a write that fails resumes, when tried again,
//! at its first alert not acknowledged, and an `alert_id` column goes out as `Nats-Msg-Id` so the
//! stream drops an alert it already holds.

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use async_nats::jetstream::{self, message::PublishMessage};
use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Sink, SinkSpec};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Server;
use super::config::NatsSinkConfig;
use crate::format::{RecordEncoder, alert_ids};
use crate::part_written::PartWritten;
use crate::template::{NATS_SUBJECT, Template};

pub struct NatsSink {
    name: String,
    config: NatsSinkConfig,
    server: Server,
    template: Template,
    encoder: RecordEncoder,
    client: Option<async_nats::Client>,
    /// Where a failed write stopped, for its retry.
    part_written: PartWritten,
}

impl NatsSink {
    pub fn create(spec: &SinkSpec) -> Result<Box<dyn Sink>, OptionError> {
        let config: NatsSinkConfig = spec.options.deserialize()?;
        let server = Server::new(
            &config.url,
            config.username.as_deref(),
            config.password.as_deref(),
            config.password_env.as_deref(),
            config.token_env.as_deref(),
            config.ca_file.as_deref(),
        )?;
        let template = Template::parse(&config.subject, &NATS_SUBJECT)
            .map_err(|m| OptionError::invalid("subject", m))?;
        let encoder = RecordEncoder::new(config.format, config.value_column.clone())?;
        Ok(Box::new(Self {
            name: spec.name.to_string(),
            config,
            server,
            template,
            encoder,
            client: None,
            part_written: PartWritten::default(),
        }))
    }

    /// The client, connected on the first write (so `eddy check` never connects).
    async fn client(&mut self) -> Result<async_nats::Client, ConnectorError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let client = self.server.connect(&self.name, events_tx).await?;
        info!(sink = %self.name, "connected to {}", self.server.address());
        let sink = self.name.clone();
        tokio::spawn(async move {
            // The client reports its first connection too: only one after a loss is a reconnect.
            let mut lost = false;
            while let Some(e) = events.recv().await {
                match e {
                    async_nats::Event::Disconnected => {
                        lost = true;
                        warn!(sink = %sink, "disconnected from NATS; reconnecting")
                    }
                    async_nats::Event::Connected if lost => {
                        lost = false;
                        info!(sink = %sink, "reconnected to NATS")
                    }
                    other => debug!(sink = %sink, "NATS: {other}"),
                }
            }
        });
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Publishes rows `from..` to JetStream and awaits their acknowledgements; on failure, the
    /// first row not acknowledged.
    async fn publish_acknowledged(
        &mut self,
        client: async_nats::Client,
        subjects: Vec<String>,
        payloads: Vec<Vec<u8>>,
        ids: Option<Vec<Option<String>>>,
        from: usize,
    ) -> Result<(), (usize, ConnectorError)> {
        let context = jetstream::new(client);
        let mut acks = Vec::with_capacity(subjects.len() - from);
        for (row, (subject, payload)) in subjects.into_iter().zip(payloads).enumerate().skip(from) {
            let mut message = PublishMessage::build().payload(payload.into());
            if let Some(Some(id)) = ids.as_ref().map(|ids| &ids[row]) {
                message = message.message_id(id);
            }
            let published = tokio::time::timeout(
                self.config.timeout,
                context.send_publish(subject.clone(), message),
            )
            .await;
            match published {
                Ok(Ok(ack)) => acks.push((row, ack)),
                Ok(Err(e)) => {
                    return Err((
                        first_unacknowledged(acks, row).await,
                        ConnectorError::retryable(format!("cannot publish to {subject}: {e}")),
                    ));
                }
                Err(_) => {
                    return Err((
                        first_unacknowledged(acks, row).await,
                        ConnectorError::retryable(format!(
                            "publishing to {subject} took longer than {:?}",
                            self.config.timeout
                        )),
                    ));
                }
            }
        }
        for (row, ack) in acks {
            match tokio::time::timeout(self.config.timeout, ack).await {
                Ok(Ok(_)) => {}
                failed => {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no acknowledgement within {:?}", self.config.timeout),
                    };
                    return Err((
                        row,
                        ConnectorError::retryable(format!(
                            "the JetStream server did not take an alert: {why}"
                        )),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// After a publish failed at row `failed`: the first row whose acknowledgement does not come.
async fn first_unacknowledged(
    acks: Vec<(usize, jetstream::context::PublishAckFuture)>,
    failed: usize,
) -> usize {
    for (row, ack) in acks {
        if !matches!(
            tokio::time::timeout(std::time::Duration::from_secs(5), ack).await,
            Ok(Ok(_))
        ) {
            return row;
        }
    }
    failed
}

#[async_trait]
impl Sink for NatsSink {
    fn describe(&self) -> String {
        format!(
            "{} subject {}{} ({})",
            self.server.address(),
            self.template,
            if self.config.jetstream {
                " through JetStream"
            } else {
                ""
            },
            self.encoder.format().describe()
        )
    }

    fn check_schema(&self, schema: &Schema) -> Result<(), String> {
        self.template.check(schema)?;
        self.encoder.check(schema)
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        let client = self.client().await?;
        let subjects = self
            .template
            .render(&batch)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        let payloads = self
            .encoder
            .each(&batch)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        if !self.config.jetstream {
            for (subject, payload) in subjects.into_iter().zip(payloads) {
                client
                    .publish(subject, payload.into())
                    .await
                    .map_err(|e| ConnectorError::retryable(format!("cannot publish: {e}")))?;
            }
            return Ok(());
        }
        let from = self.part_written.resume(&batch);
        let ids = alert_ids(&batch);
        match self
            .publish_acknowledged(client, subjects, payloads, ids, from)
            .await
        {
            Ok(()) => Ok(()),
            Err((resume, e)) => {
                self.part_written.failed(&batch, resume);
                Err(e)
            }
        }
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        let Some(client) = &self.client else {
            return Ok(());
        };
        match tokio::time::timeout(self.config.timeout, client.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ConnectorError::retryable(format!(
                "cannot flush to {}: {e}",
                self.server.address()
            ))),
            Err(_) => Err(ConnectorError::retryable(format!(
                "{} did not take the alerts within {:?}",
                self.server.address(),
                self.config.timeout
            ))),
        }
    }
}
