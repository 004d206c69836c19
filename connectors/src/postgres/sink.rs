//! Inserts rows into a PostgreSQL table (tokio-postgres), one statement per write: every column is
//! sent as a text array and cast to its column's type, `INSERT ... SELECT ... FROM UNNEST(...)`,
//! so a batch of thousands of alerts is one round trip. With an `alert_id` column the insert does
//! nothing for ids already there, so a replay or a restart writes no alert twice.

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{DataType, Schema, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Sink, SinkSpec};
use tokio_postgres::Client;
use tracing::{info, warn};

use super::config::PostgresSinkConfig;
use super::{connect, quote_identifier};

pub struct PostgresSink {
    name: String,
    config: PostgresSinkConfig,
    /// The table, quoted.
    table: String,
    client: Option<Client>,
    /// The table has been created (or found), when `create_table` asks for it.
    created: bool,
}

impl PostgresSink {
    pub fn create(spec: &SinkSpec) -> Result<Box<dyn Sink>, OptionError> {
        let config: PostgresSinkConfig = spec.options.deserialize()?;
        config
            .url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| OptionError::invalid("url", format!("not a PostgreSQL URL: {e}")))?;
        let table = config
            .table
            .split('.')
            .map(quote_identifier)
            .collect::<Vec<_>>()
            .join(".");
        Ok(Box::new(Self {
            name: spec.name.to_string(),
            config,
            table,
            client: None,
            created: false,
        }))
    }

    /// The connection, made (again) if there is none or it broke.
    async fn client(&mut self) -> Result<&Client, ConnectorError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            warn!(sink = %self.name, "the connection to PostgreSQL was lost; connecting again");
            self.client = None;
        }
        if self.client.is_none() {
            let client = connect(&self.config.url, &format!("eddy sink {}", self.name)).await?;
            info!(sink = %self.name, "connected to PostgreSQL");
            self.client = Some(client);
        }
        self.client
            .as_ref()
            .ok_or_else(|| ConnectorError::fatal("no connection"))
    }
}

#[async_trait]
impl Sink for PostgresSink {
    fn describe(&self) -> String {
        let create = if self.config.create_table {
            ", created if missing"
        } else {
            ""
        };
        format!("PostgreSQL table {}{create}", self.config.table)
    }

    fn check_schema(&self, schema: &Schema) -> Result<(), String> {
        if let Some(f) = schema
            .fields()
            .iter()
            .find(|f| pg_type(f.data_type()).is_none())
        {
            return Err(format!(
                "column {} is {}, which Eddy does not write to PostgreSQL",
                f.name(),
                f.data_type()
            ));
        }
        Ok(())
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let schema = batch.schema();
        let create =
            (self.config.create_table && !self.created).then(|| create_table(&self.table, &schema));
        let insert = insert_statement(&self.table, &schema);
        let columns = text_columns(&batch).map_err(|e| ConnectorError::fatal(e.to_string()))?;
        let client = self.client().await?;
        if let Some(sql) = create {
            client.batch_execute(&sql).await.map_err(|e| pg_error(&e))?;
        }
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = columns
            .iter()
            .map(|c| c as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let result = client.execute(&insert, &params).await;
        if let Err(e) = result {
            let error = pg_error(&e);
            if error.retryable {
                // The next try connects again.
                self.client = None;
            }
            return Err(error);
        }
        self.created = true;
        Ok(())
    }
}

/// `INSERT INTO t (a, b) SELECT u.a::double precision, ... FROM UNNEST($1::text[], ...) AS u(a,
/// b)`, doing nothing for an `alert_id` already there.
fn insert_statement(table: &str, schema: &Schema) -> String {
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| quote_identifier(f.name()))
        .collect();
    let casts: Vec<String> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| format!("u.c{i}::{}", pg_type(f.data_type()).unwrap_or("text")))
        .collect();
    let params: Vec<String> = (1..=schema.fields().len())
        .map(|i| format!("${i}::text[]"))
        .collect();
    let aliases: Vec<String> = (0..schema.fields().len())
        .map(|i| format!("c{i}"))
        .collect();
    let conflict = if schema.column_with_name("alert_id").is_some() {
        " ON CONFLICT (\"alert_id\") DO NOTHING"
    } else {
        ""
    };
    format!(
        "INSERT INTO {table} ({}) SELECT {} FROM UNNEST({}) AS u({}){conflict}",
        names.join(", "),
        casts.join(", "),
        params.join(", "),
        aliases.join(", ")
    )
}

/// `CREATE TABLE IF NOT EXISTS` with the rows' columns; `alert_id` the primary key.
fn create_table(table: &str, schema: &Schema) -> String {
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let key = if f.name() == "alert_id" {
                " PRIMARY KEY"
            } else {
                ""
            };
            format!(
                "{} {}{key}",
                quote_identifier(f.name()),
                pg_type(f.data_type()).unwrap_or("text")
            )
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {table} ({})",
        columns.join(", ")
    )
}

/// The PostgreSQL type a column is written as.
fn pg_type(t: &DataType) -> Option<&'static str> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Float64 => "double precision",
        DataType::Float32 => "real",
        DataType::Int64 | DataType::UInt32 => "bigint",
        DataType::Int32 | DataType::UInt16 => "integer",
        DataType::Int16 | DataType::Int8 | DataType::UInt8 => "smallint",
        DataType::UInt64 => "numeric",
        DataType::Boolean => "boolean",
        DataType::Timestamp(TimeUnit::Millisecond, _) => "timestamptz",
        DataType::Date32 => "date",
        DataType::Decimal128(_, _) => "numeric",
        _ => return None,
    })
}

/// Every column as text (NULL as NULL), times as RFC 3339 in UTC.
fn text_columns(batch: &RecordBatch) -> Result<Vec<Vec<Option<String>>>, arrow::error::ArrowError> {
    let batch = crate::format::json::utc_timestamps(batch)?;
    let options = FormatOptions::default().with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.3fZ"));
    batch
        .columns()
        .iter()
        .map(|c| {
            let f = ArrayFormatter::try_new(c.as_ref(), &options)?;
            Ok((0..c.len())
                .map(|i| (!c.is_null(i)).then(|| f.value(i).to_string()))
                .collect())
        })
        .collect()
}

/// A PostgreSQL error as a connector error: a lost connection, a server shutting down or
/// starting, a conflict between transactions are worth a retry; a refused statement (a missing
/// table, a type that does not fit) is not.
fn pg_error(e: &tokio_postgres::Error) -> ConnectorError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let message = format!("PostgreSQL: {} ({code})", db.message());
            // 08: connection exception; 57P: operator intervention; 53: insufficient
            // resources; 40001/40P01: serialization failure, deadlock.
            if e.is_closed()
                || ["08", "57P", "53", "40001", "40P01"]
                    .iter()
                    .any(|p| code.starts_with(p))
            {
                ConnectorError::retryable(message)
            } else {
                ConnectorError::fatal(message)
            }
        }
        None => ConnectorError::retryable(format!("PostgreSQL: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    #[test]
    fn one_statement_inserts_every_row_and_skips_known_alert_ids() {
        let schema = Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new("avg_temp", DataType::Float64, true),
            Field::new(
                "window_start",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("alert_id", DataType::Utf8, false),
        ]);
        assert_eq!(
            insert_statement("\"alerts\"", &schema),
            "INSERT INTO \"alerts\" (\"device_id\", \"avg_temp\", \"window_start\", \"alert_id\") \
             SELECT u.c0::text, u.c1::double precision, u.c2::timestamptz, u.c3::text \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS u(c0, c1, c2, c3) \
             ON CONFLICT (\"alert_id\") DO NOTHING"
        );
        assert_eq!(
            create_table("\"alerts\"", &schema),
            "CREATE TABLE IF NOT EXISTS \"alerts\" (\"device_id\" text, \"avg_temp\" double precision, \
             \"window_start\" timestamptz, \"alert_id\" text PRIMARY KEY)"
        );
    }
}
