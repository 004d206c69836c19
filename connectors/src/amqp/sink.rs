//! Publishes each row as one message to an exchange, with a routing key from a template, the
//! columns of `header_columns` as headers, persistent by default. The channel is in confirm mode:
//! a write publishes every alert at once and then waits for the broker's confirmations, so what a
//! write returned from is in the broker's queues (before a checkpoint completes). A write that
//! fails resumes, when tried again, at its first alert not confirmed; a lost connection is made
//! again on the retry.

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::Schema;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Sink, SinkSpec};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ExchangeKind};
use tracing::info;

use super::config::AmqpSinkConfig;
use super::{check_url, connect, exchange_kind, shown_address};
use crate::format::{Format, RecordEncoder, alert_ids};
use crate::part_written::PartWritten;
use crate::template::{AMQP_ROUTING_KEY, Template};

pub struct AmqpSink {
    name: String,
    config: AmqpSinkConfig,
    kind: ExchangeKind,
    routing_key: Template,
    headers: Vec<String>,
    encoder: RecordEncoder,
    connection: Option<(Connection, Channel)>,
    /// Where a failed write stopped, for its retry.
    part_written: PartWritten,
}

impl AmqpSink {
    pub fn create(spec: &SinkSpec) -> Result<Box<dyn Sink>, OptionError> {
        let config: AmqpSinkConfig = spec.options.deserialize()?;
        check_url(&config.url)?;
        let kind = exchange_kind(&config.exchange_type)?;
        if config.exchange.is_empty() && config.routing_key.is_empty() {
            return Err(OptionError::invalid(
                "routing_key",
                "the default exchange ('') routes to the queue the routing key names: give it",
            ));
        }
        let routing_key = if config.routing_key.is_empty() {
            None
        } else {
            Some(
                Template::parse(&config.routing_key, &AMQP_ROUTING_KEY)
                    .map_err(|m| OptionError::invalid("routing_key", m))?,
            )
        };
        let headers = config
            .header_columns
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        let encoder = RecordEncoder::new(config.format, config.value_column.clone())?;
        Ok(Box::new(Self {
            name: spec.name.to_string(),
            kind,
            routing_key: routing_key.unwrap_or_else(Template::empty),
            headers,
            encoder,
            config,
            connection: None,
            part_written: PartWritten::default(),
        }))
    }

    /// The channel, connected (in confirm mode, the exchange declared if asked) on the first write
    /// and again after a loss.
    async fn channel(&mut self) -> Result<Channel, ConnectorError> {
        if let Some((c, ch)) = &self.connection
            && c.status().connected()
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        self.connection = None;
        let connection = connect(&self.config.url, &self.name).await?;
        let retry = |what: &str, e: lapin::Error| ConnectorError::retryable(format!("{what}: {e}"));
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| retry("cannot open a channel", e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| retry("cannot turn publisher confirms on", e))?;
        if self.config.declare && !self.config.exchange.is_empty() {
            channel
                .exchange_declare(
                    self.config.exchange.as_str().into(),
                    self.kind.clone(),
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| {
                    ConnectorError::fatal(format!(
                        "cannot declare the exchange {}: {e}",
                        self.config.exchange
                    ))
                })?;
        }
        info!(sink = %self.name, "connected to {}", shown_address(&self.config.url));
        self.connection = Some((connection, channel.clone()));
        Ok(channel)
    }

    /// Publishes rows `from..` and waits for their confirmations; on failure, the first row not
    /// confirmed.
    async fn publish(
        &mut self,
        channel: Channel,
        batch: &RecordBatch,
        from: usize,
    ) -> Result<(), (usize, ConnectorError)> {
        let fatal = |e: arrow::error::ArrowError| (from, ConnectorError::fatal(e.to_string()));
        let keys = self.routing_key.render(batch).map_err(fatal)?;
        let payloads = self.encoder.each(batch).map_err(fatal)?;
        let headers = self.header_tables(batch).map_err(fatal)?;
        let ids = alert_ids(batch);
        let content_type = match self.encoder.format() {
            Format::Json => "application/json",
            Format::Csv => "text/csv",
            Format::Raw => "text/plain",
        };
        let mut confirms = Vec::with_capacity(batch.num_rows() - from);
        for row in from..batch.num_rows() {
            let mut properties = BasicProperties::default().with_content_type(content_type.into());
            if self.config.persistent {
                properties = properties.with_delivery_mode(2);
            }
            if let Some(ids) = &ids
                && let Some(id) = &ids[row]
            {
                properties = properties.with_message_id(id.as_str().into());
            }
            if let Some(h) = &headers {
                properties = properties.with_headers(h[row].clone());
            }
            let published = channel
                .basic_publish(
                    self.config.exchange.as_str().into(),
                    keys[row].as_str().into(),
                    BasicPublishOptions::default(),
                    &payloads[row],
                    properties,
                )
                .await;
            match published {
                Ok(confirm) => confirms.push((row, confirm)),
                Err(e) => {
                    let first = first_unconfirmed(confirms, row, self.config.timeout).await;
                    return Err((
                        first,
                        ConnectorError::retryable(format!("cannot publish: {e}")),
                    ));
                }
            }
        }
        for (row, confirm) in confirms {
            let why = match tokio::time::timeout(self.config.timeout, confirm).await {
                Ok(Ok(Confirmation::Ack(None) | Confirmation::NotRequested)) => continue,
                Ok(Ok(Confirmation::Ack(Some(_)))) => "the message was returned".to_string(),
                Ok(Ok(Confirmation::Nack(_))) => "the broker refused the message".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no confirmation within {:?}", self.config.timeout),
            };
            return Err((
                row,
                ConnectorError::retryable(format!(
                    "exchange '{}' did not take an alert: {why}",
                    self.config.exchange
                )),
            ));
        }
        Ok(())
    }

    /// The headers of every row, when `header_columns` names some.
    fn header_tables(
        &self,
        batch: &RecordBatch,
    ) -> Result<Option<Vec<FieldTable>>, arrow::error::ArrowError> {
        if self.headers.is_empty() {
            return Ok(None);
        }
        let options = FormatOptions::default().with_null("");
        let mut columns = Vec::with_capacity(self.headers.len());
        for name in &self.headers {
            let column = batch.column_by_name(name).ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("header column '{name}' is missing"))
            })?;
            columns.push((
                name,
                column,
                ArrayFormatter::try_new(column.as_ref(), &options)?,
            ));
        }
        let mut tables = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let mut table = FieldTable::default();
            for (name, column, f) in &columns {
                if column.is_null(row) {
                    continue;
                }
                table.insert(
                    ShortString::from(name.as_str()),
                    AMQPValue::LongString(LongString::from(f.value(row).to_string())),
                );
            }
            tables.push(table);
        }
        Ok(Some(tables))
    }
}

/// After a publish failed at row `failed`: the first row whose confirmation does not come.
async fn first_unconfirmed(
    confirms: Vec<(usize, lapin::PublisherConfirm)>,
    failed: usize,
    timeout: std::time::Duration,
) -> usize {
    for (row, confirm) in confirms {
        if !matches!(
            tokio::time::timeout(timeout, confirm).await,
            Ok(Ok(Confirmation::Ack(None) | Confirmation::NotRequested))
        ) {
            return row;
        }
    }
    failed
}

#[async_trait]
impl Sink for AmqpSink {
    fn describe(&self) -> String {
        let exchange = if self.config.exchange.is_empty() {
            "the default exchange".to_string()
        } else {
            format!(
                "{} exchange {}",
                self.config.exchange_type, self.config.exchange
            )
        };
        format!(
            "{} {exchange} routing key {}{} ({})",
            shown_address(&self.config.url),
            self.routing_key,
            if self.config.persistent {
                ", persistent"
            } else {
                ""
            },
            self.encoder.format().describe()
        )
    }

    fn check_schema(&self, schema: &Schema) -> Result<(), String> {
        self.routing_key.check(schema)?;
        for name in &self.headers {
            if schema.column_with_name(name).is_none() {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(format!(
                    "header_columns names '{name}', but the query's columns are: {}",
                    names.join(", ")
                ));
            }
        }
        self.encoder.check(schema)
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        let from = self.part_written.resume(&batch);
        let channel = match self.channel().await {
            Ok(c) => c,
            Err(e) => {
                self.part_written.failed(&batch, from);
                return Err(e);
            }
        };
        match self.publish(channel, &batch, from).await {
            Ok(()) => Ok(()),
            Err((resume, e)) => {
                self.part_written.failed(&batch, resume);
                Err(e)
            }
        }
    }
}
