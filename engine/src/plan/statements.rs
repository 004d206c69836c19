//! `CREATE SOURCE`, `CREATE SINK` and `CREATE TABLE`: schemas, event time, and connectors built
//! from options.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::sql::sqlparser::ast::{self as sql, BinaryOperator};

use super::Planner;
use super::names::{location_of, normalize};
use super::{PlannedSink, PlannedSource, PlannedTable};
use crate::connector::{SinkSpec, SourceSpec, TableSpec};
use crate::error::{Location, SqlError};
use crate::options::{OptionError, Options};
use crate::sql::ast::{CreateSink, CreateSource, CreateTable, WatermarkDecl};
use crate::time::EventTime;

/// Options every source takes, whatever its connector.
pub const SOURCE_OPTIONS: [&str; 5] = [
    "connector",
    "dead_letter",
    "idle_timeout",
    "late_sink",
    "max_future",
];

/// Rows stamped further ahead of the clock than this are dead letters, unless `max_future` says.
const DEFAULT_MAX_FUTURE: std::time::Duration = std::time::Duration::from_secs(86_400);
/// Options every sink takes.
pub const SINK_OPTIONS: [&str; 7] = [
    "alert_id",
    "connector",
    "dead_letter",
    "retries",
    "retry_backoff",
    "throttle",
    "throttle_key",
];
/// Options every table takes, whatever its connector.
pub const TABLE_OPTIONS: [&str; 2] = ["connector", "refresh"];

impl Planner<'_> {
    pub(super) fn create_source(&mut self, stmt: CreateSource) -> Result<(), SqlError> {
        let name = normalize(&stmt.name);
        if self.input_named(&name).is_some() {
            return Err(SqlError::new(
                Location::from(&stmt.name),
                format!("'{name}' is already defined"),
            ));
        }
        let watermark_column = stmt.watermark.as_ref().map(|w| normalize(&w.column));
        let fields = declared_fields(&stmt.columns, watermark_column.as_deref())?;
        if fields.is_empty() {
            return Err(SqlError::new(
                stmt.location,
                format!("source '{name}' declares no columns"),
            ));
        }
        let schema = Arc::new(Schema::new(fields));
        let event_time = match &stmt.watermark {
            Some(w) => Some(self.event_time(w, &schema)?),
            None => None,
        };

        let mut options = self.source_options(&name, stmt.options);
        self.expand_options(&mut options, stmt.location)?;
        let connector = take_connector(
            &mut options,
            stmt.location,
            &self.registry.source_connectors(),
            "source",
        )?;
        let dead_letter = self.dead_letter_sink(&name, &mut options)?;
        let idle_timeout = match options.take("idle_timeout") {
            Some(entry) => {
                if event_time.is_none() {
                    return Err(SqlError::new(
                        entry.key_location,
                        format!(
                            "idle_timeout advances the watermark, but source '{name}' declares no WATERMARK"
                        ),
                    ));
                }
                let d = crate::options::parse_duration(&entry.value).map_err(|e| {
                    SqlError::new(entry.value_location, format!("idle_timeout: {e}"))
                })?;
                if d.is_zero() {
                    return Err(SqlError::new(
                        entry.value_location,
                        "idle_timeout must be longer than zero",
                    ));
                }
                Some(d)
            }
            None => None,
        };
        let max_future = match options.take("max_future") {
            Some(entry) => {
                let d = crate::options::parse_duration(&entry.value)
                    .map_err(|e| SqlError::new(entry.value_location, format!("max_future: {e}")))?;
                Some(d)
            }
            None => Some(DEFAULT_MAX_FUTURE),
        }
        .filter(|_| event_time.is_some());
        let late_sink = match options.take("late_sink") {
            Some(entry) => {
                if event_time.is_none() {
                    return Err(SqlError::new(
                        entry.key_location,
                        format!(
                            "late_sink receives rows older than the watermark, but source '{name}' declares no WATERMARK"
                        ),
                    ));
                }
                Some((entry.value.to_lowercase(), entry.value_location))
            }
            None => None,
        };
        let spec = SourceSpec {
            name: &name,
            schema: &schema,
            options: &options,
        };
        let source = self
            .registry
            .create_source(&connector.0, &spec)
            .ok_or_else(|| {
                SqlError::new(
                    connector.1,
                    format!(
                        "unknown source connector '{}'; available: {}",
                        connector.0,
                        self.registry.source_connectors().join(", ")
                    ),
                )
            })?
            .map_err(|e| option_error(e, &options, stmt.location, &connector.0, &SOURCE_OPTIONS))?;
        self.register_table(&name, Arc::clone(&schema), stmt.location)?;
        self.sources.push(PlannedSource {
            name,
            connector_name: connector.0,
            schema,
            event_time,
            connector: source,
            dead_letter,
            idle_timeout,
            late_sink: None,
            max_future,
        });
        if let Some((sink, location)) = late_sink {
            self.pending_late_sinks
                .push((self.sources.len() - 1, sink, location));
        }
        Ok(())
    }

    pub(super) fn create_table(&mut self, stmt: CreateTable) -> Result<(), SqlError> {
        let name = normalize(&stmt.name);
        let location = Location::from(&stmt.name);
        if self.input_named(&name).is_some() || self.table_index(&name).is_some() {
            return Err(SqlError::new(
                location,
                format!("'{name}' is already defined"),
            ));
        }
        let fields = declared_fields(&stmt.columns, None)?;
        if fields.is_empty() {
            return Err(SqlError::new(
                stmt.location,
                format!("table '{name}' declares no columns"),
            ));
        }
        let schema = Arc::new(Schema::new(fields));
        let mut options = stmt.options;
        self.expand_options(&mut options, stmt.location)?;
        let connector = take_connector(
            &mut options,
            stmt.location,
            &self.registry.table_connectors(),
            "table",
        )?;
        let refresh = match options.take("refresh") {
            Some(entry) => {
                let d = crate::options::parse_duration(&entry.value)
                    .map_err(|e| SqlError::new(entry.value_location, format!("refresh: {e}")))?;
                if d.is_zero() {
                    return Err(SqlError::new(
                        entry.value_location,
                        "refresh must be longer than zero; leave it out to load the table once",
                    ));
                }
                Some(d)
            }
            None => None,
        };
        let spec = TableSpec {
            name: &name,
            schema: &schema,
            options: &options,
        };
        let table = self
            .registry
            .create_table(&connector.0, &spec)
            .ok_or_else(|| {
                SqlError::new(
                    connector.1,
                    format!(
                        "unknown table connector '{}'; available: {}",
                        connector.0,
                        self.registry.table_connectors().join(", ")
                    ),
                )
            })?
            .map_err(|e| option_error(e, &options, stmt.location, &connector.0, &TABLE_OPTIONS))?;
        self.register_table(&name, Arc::clone(&schema), location)?;
        self.tables.push(PlannedTable {
            name,
            connector_name: connector.0,
            schema,
            table: Arc::from(table),
            refresh,
            snapshot: Default::default(),
        });
        Ok(())
    }

    pub(super) fn create_sink(&mut self, stmt: CreateSink) -> Result<(), SqlError> {
        let name = normalize(&stmt.name);
        if self.sink_index(&name).is_some() {
            return Err(SqlError::new(
                Location::from(&stmt.name),
                format!("sink '{name}' is already defined"),
            ));
        }
        let mut options = stmt.options;
        self.expand_options(&mut options, stmt.location)?;
        let connector = take_connector(
            &mut options,
            stmt.location,
            &self.registry.sink_connectors(),
            "sink",
        )?;
        let alert_id = match options.take("alert_id") {
            Some(entry) => match entry.value.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(SqlError::new(
                        entry.value_location,
                        "alert_id: expected 'true' or 'false'",
                    ));
                }
            },
            None => false,
        };
        let mut retry = super::Retry::default();
        if let Some(entry) = options.take("retries") {
            retry.attempts = entry.value.parse().map_err(|_| {
                SqlError::new(
                    entry.value_location,
                    "retries: expected a whole number of retries, such as '5'",
                )
            })?;
        }
        if let Some(entry) = options.take("retry_backoff") {
            retry.first = crate::options::parse_duration(&entry.value)
                .map_err(|e| SqlError::new(entry.value_location, format!("retry_backoff: {e}")))?;
            retry.max = retry.max.max(retry.first);
        }
        let throttle = match options.take("throttle") {
            Some(entry) => {
                let interval = crate::options::parse_duration(&entry.value)
                    .map_err(|e| SqlError::new(entry.value_location, format!("throttle: {e}")))?;
                if interval.is_zero() {
                    return Err(SqlError::new(
                        entry.value_location,
                        "throttle: give an interval longer than zero, such as '1 minute'",
                    ));
                }
                let key = options.take("throttle_key").map(|k| {
                    k.value
                        .split(',')
                        .map(|c| c.trim().to_lowercase())
                        .filter(|c| !c.is_empty())
                        .collect()
                });
                Some(super::Throttling {
                    interval: interval.as_millis() as crate::time::Millis,
                    key,
                    location: entry.value_location,
                })
            }
            None => {
                if let Some(k) = options.take("throttle_key") {
                    return Err(SqlError::new(
                        k.key_location,
                        "throttle_key names the key of a throttle: give throttle = '1 minute' too",
                    ));
                }
                None
            }
        };
        let dead_letter = self.dead_letter_sink(&name, &mut options)?;
        let spec = SinkSpec {
            name: &name,
            options: &options,
        };
        let sink = self
            .registry
            .create_sink(&connector.0, &spec)
            .ok_or_else(|| {
                SqlError::new(
                    connector.1,
                    format!(
                        "unknown sink connector '{}'; available: {}",
                        connector.0,
                        self.registry.sink_connectors().join(", ")
                    ),
                )
            })?
            .map_err(|e| option_error(e, &options, stmt.location, &connector.0, &SINK_OPTIONS))?;
        self.sinks.push(PlannedSink {
            name,
            connector_name: connector.0,
            sink,
            retry,
            dead_letter,
            alert_id,
            throttle,
            suppressed: Default::default(),
        });
        Ok(())
    }

    /// The file sink of a `dead_letter = 'path'` option, if given.
    fn dead_letter_sink(
        &self,
        name: &str,
        options: &mut Options,
    ) -> Result<Option<Box<dyn crate::connector::Sink>>, SqlError> {
        let Some(entry) = options.take("dead_letter") else {
            return Ok(None);
        };
        let dl_options = Options::from_pairs([("path", entry.value.as_str())]);
        let spec = SinkSpec {
            name,
            options: &dl_options,
        };
        let sink = self
            .registry
            .create_sink("file", &spec)
            .ok_or_else(|| {
                SqlError::new(entry.key_location, "dead_letter needs the file connector")
            })?
            .map_err(|e| SqlError::new(entry.value_location, format!("dead_letter: {e}")))?;
        Ok(Some(sink))
    }

    /// `WATERMARK FOR ts AS ts - INTERVAL '2' SECOND` (or `AS ts`, a bound of zero).
    fn event_time(&self, w: &WatermarkDecl, schema: &Schema) -> Result<EventTime, SqlError> {
        let column = normalize(&w.column);
        let (index, field) = schema.column_with_name(&column).ok_or_else(|| {
            SqlError::new(
                Location::from(&w.column),
                format!("WATERMARK FOR '{column}': no such column in this source"),
            )
        })?;
        if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
            return Err(SqlError::new(
                Location::from(&w.column),
                format!(
                    "WATERMARK FOR '{column}': the event-time column must be a TIMESTAMP, not {}",
                    field.data_type()
                ),
            ));
        }
        let expected = format!(
            "expected the watermark as `{column} - INTERVAL '2' SECOND` (or `{column}` for no delay)"
        );
        let is_column =
            |e: &sql::Expr| matches!(e, sql::Expr::Identifier(i) if normalize(i) == column);
        let bound = match &w.expr {
            e if is_column(e) => 0,
            sql::Expr::BinaryOp {
                left,
                op: BinaryOperator::Minus,
                right,
            } if is_column(left) => self.interval_millis(right)?,
            e => return Err(SqlError::new(location_of(e), expected)),
        };
        if bound < 0 {
            return Err(SqlError::new(
                location_of(&w.expr),
                "the watermark delay cannot be negative",
            ));
        }
        Ok(EventTime {
            column,
            index,
            bound,
        })
    }
}

/// Takes `connector = '...'`, which every source and sink must have.
/// The fields of declared columns; the event-time column (if any) cannot be NULL.
fn declared_fields(
    columns: &[sql::ColumnDef],
    event_time: Option<&str>,
) -> Result<Vec<Field>, SqlError> {
    let mut fields = Vec::with_capacity(columns.len());
    for c in columns {
        let column = normalize(&c.name);
        if fields.iter().any(|f: &Field| f.name() == &column) {
            return Err(SqlError::new(
                Location::from(&c.name),
                format!("column '{column}' is declared twice"),
            ));
        }
        let data_type = column_type(&c.data_type).ok_or_else(|| {
            SqlError::new(
                Location::from(&c.name),
                format!(
                    "column '{column}': unsupported type {}; use TEXT, DOUBLE, FLOAT, BIGINT, INT, SMALLINT, BOOLEAN, TIMESTAMP or DATE",
                    c.data_type
                ),
            )
        })?;
        let not_null = c
            .options
            .iter()
            .any(|o| matches!(o.option, sql::ColumnOption::NotNull));
        // Rows without event time cannot be placed in time: the decoder rejects them.
        let nullable = !not_null && event_time != Some(column.as_str());
        fields.push(Field::new(column, data_type, nullable));
    }
    Ok(fields)
}

fn take_connector(
    options: &mut Options,
    location: Location,
    available: &[&str],
    what: &str,
) -> Result<(String, Location), SqlError> {
    match options.take("connector") {
        Some(e) => Ok((e.value.to_ascii_lowercase(), e.value_location)),
        None => Err(SqlError::new(
            location,
            format!(
                "missing option 'connector': a {what} needs WITH (connector = '...'), one of: {}",
                available.join(", ")
            ),
        )),
    }
}

/// Places a connector's option error at the option it names, and lists every valid option.
fn option_error(
    e: OptionError,
    options: &Options,
    statement: Location,
    connector: &str,
    engine_options: &[&str],
) -> SqlError {
    let location = match &e {
        OptionError::Unknown { key, .. } => options.entry(key).map(|o| o.key_location),
        OptionError::Invalid { key, .. } => options.location_of(key),
        _ => None,
    }
    .unwrap_or(statement);
    let message = match e {
        OptionError::Unknown { key, mut valid } => {
            valid.extend(engine_options.iter().map(|s| s.to_string()));
            valid.sort();
            format!(
                "unknown option '{key}' for connector '{connector}'; valid options are: {}",
                valid.join(", ")
            )
        }
        OptionError::Missing { key } => {
            format!("missing option '{key}', which connector '{connector}' requires")
        }
        e => e.to_string(),
    };
    SqlError::new(location, message)
}

/// The Arrow type of a declared column. Timestamps are milliseconds, UTC.
pub fn column_type(t: &sql::DataType) -> Option<DataType> {
    use sql::DataType as T;
    Some(match t {
        T::Text
        | T::Varchar(_)
        | T::String(_)
        | T::Char(_)
        | T::Character(_)
        | T::CharacterVarying(_)
        | T::CharVarying(_)
        | T::Nvarchar(_) => DataType::Utf8,
        T::Double(_) | T::DoublePrecision | T::Float64 | T::Float8 => DataType::Float64,
        T::Float(_) | T::Real | T::Float4 | T::Float32 => DataType::Float32,
        T::BigInt(_) | T::Int8(_) | T::Int64 => DataType::Int64,
        T::Int(_) | T::Integer(_) | T::Int4(_) | T::Int32 => DataType::Int32,
        T::SmallInt(_) | T::Int2(_) | T::Int16 => DataType::Int16,
        T::TinyInt(_) => DataType::Int8,
        T::Boolean | T::Bool => DataType::Boolean,
        T::Timestamp(_, _) | T::Datetime(_) => DataType::Timestamp(TimeUnit::Millisecond, None),
        T::Date => DataType::Date32,
        _ => return None,
    })
}
