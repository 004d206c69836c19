//! Reference rows from PostgreSQL: a table read whole, or a query, each column read as text and
//! into its declared type (by name). Loaded before the sources start and again every `refresh`; a
//! failed load keeps the last rows.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use eddy_engine::{ConnectorError, OptionError, Table, TableSpec};
use tokio_postgres::SimpleQueryMessage;

use super::config::PostgresTableConfig;
use super::{connect, quote_identifier};
use crate::format::values::parse_texts;

pub struct PostgresTable {
    name: String,
    config: PostgresTableConfig,
    query: String,
    schema: SchemaRef,
}

impl PostgresTable {
    pub fn create(spec: &TableSpec) -> Result<Box<dyn Table>, OptionError> {
        let config: PostgresTableConfig = spec.options.deserialize()?;
        config
            .url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| OptionError::invalid("url", format!("not a PostgreSQL URL: {e}")))?;
        let query = match (&config.table, &config.query) {
            (Some(table), None) => {
                let columns: Vec<String> = spec
                    .schema
                    .fields()
                    .iter()
                    .map(|f| quote_identifier(f.name()))
                    .collect();
                let table: Vec<String> = table.split('.').map(quote_identifier).collect();
                format!("SELECT {} FROM {}", columns.join(", "), table.join("."))
            }
            (None, Some(query)) => query.clone(),
            _ => {
                return Err(OptionError::invalid(
                    "table",
                    "give either table (read whole) or query",
                ));
            }
        };
        Ok(Box::new(Self {
            name: spec.name.to_string(),
            config,
            query,
            schema: Arc::clone(spec.schema),
        }))
    }
}

#[async_trait]
impl Table for PostgresTable {
    fn describe(&self) -> String {
        match &self.config.table {
            Some(t) => format!("PostgreSQL table {t}"),
            None => format!("PostgreSQL query {}", self.query),
        }
    }

    async fn load(&self) -> Result<RecordBatch, ConnectorError> {
        let client = connect(&self.config.url, &format!("eddy table {}", self.name)).await?;
        let messages = client
            .simple_query(&self.query)
            .await
            .map_err(|e| ConnectorError::retryable(format!("PostgreSQL: {e}")))?;
        let rows: Vec<_> = messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .collect();
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let at = match rows.first() {
                Some(r) => Some(
                    r.columns()
                        .iter()
                        .position(|c| c.name() == field.name().as_str())
                        .ok_or_else(|| {
                            ConnectorError::fatal(format!(
                                "the query gives no column {} (it gives {})",
                                field.name(),
                                r.columns()
                                    .iter()
                                    .map(|c| c.name())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        })?,
                ),
                None => None,
            };
            let texts: Vec<Option<&str>> = rows.iter().map(|r| at.and_then(|i| r.get(i))).collect();
            let (array, errors) = parse_texts(&texts, field.data_type(), field.name());
            if let Some(e) = errors.into_iter().flatten().next() {
                return Err(ConnectorError::fatal(format!("PostgreSQL rows: {e}")));
            }
            columns.push(array);
        }
        RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )
        .map_err(|e| ConnectorError::fatal(e.to_string()))
    }
}
