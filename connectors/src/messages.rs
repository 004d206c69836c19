//! Messages into rows, for every message broker's source: each payload decoded in the source's
//! format (JSON, CSV or a raw value), where the message was published to (an MQTT topic, a NATS
//! subject, an AMQP routing key) put in a column of its own, and an MQTT topic's levels in the
//! columns a `topic_pattern` names, and MQTT 5 user properties in the columns named after them. A
//! message whose payload or topic does not fit is rejected with the reason.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::error::ArrowError;
use eddy_engine::{ConnectorError, OptionError, SourceContext};

use crate::format::values::parse_texts;
use crate::format::{DecodeOptions, RecordDecoder};
use crate::mqtt::topic_pattern::TopicPattern;

/// A message to decode: its origin (the topic, and MQTT 5 user properties after it as
/// [`crate::mqtt::event_loop::with_user_properties`] puts them), payload and arrival time.
pub struct Message<'a> {
    pub topic: &'a [u8],
    pub payload: &'a [u8],
    pub received: i64,
}

/// A record of an ingest log, to decode.
impl<'a> std::convert::From<crate::ingest_log::Record<'a>> for Message<'a> {
    fn from(r: crate::ingest_log::Record<'a>) -> Self {
        Self {
            topic: r.origin,
            payload: r.payload,
            received: r.received,
        }
    }
}

/// What [`MessageRows::rows`] made of some messages.
pub struct Rows {
    pub batch: Option<RecordBatch>,
    /// Messages that became no row, with the reason.
    pub rejected: Vec<(usize, String)>,
}

/// Where each declared column comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    /// Column `i` of the decoded payload.
    Payload(usize),
    Topic,
    /// The `i`-th column of the topic pattern.
    Level(usize),
    /// The `i`-th user property named.
    Property(usize),
}

/// Where a source's columns come from besides the payload.
#[derive(Default)]
pub struct Origins {
    /// What a message's origin is called: `topic`, `subject`, `routing key`, `key`.
    pub name: &'static str,
    /// The column that receives the origin.
    pub column: Option<usize>,
    /// A topic pattern, as written, whose columns receive the topic's levels.
    pub pattern: Option<(String, TopicPattern)>,
    /// MQTT 5 user properties that fill the columns of the same name.
    pub properties: Vec<String>,
}

pub struct MessageRows {
    schema: SchemaRef,
    decoder: RecordDecoder,
    /// How messages become rows, as `eddy check` shows it.
    shown: String,
    pattern: Option<TopicPattern>,
    /// The user properties that fill columns of the same name.
    properties: Vec<String>,
    columns: Vec<From>,
}

impl MessageRows {
    /// Rows of `schema`: the origin's column gets each message's origin, the pattern's columns
    /// the topic's levels, the columns named by the properties the user properties of those
    /// names (NULL when a message has none), the payload the rest.
    pub fn new(
        schema: &SchemaRef,
        origins: Origins,
        options: &DecodeOptions,
    ) -> Result<Self, OptionError> {
        let shown = describe(schema, &origins, options);
        let Origins {
            column: topic_column,
            pattern,
            properties,
            ..
        } = origins;
        let pattern = pattern.map(|(_, p)| p);
        let properties = &properties[..];
        let levels: Vec<&str> = pattern.as_ref().map(|p| p.columns()).unwrap_or_default();
        for name in &levels {
            if schema.column_with_name(name).is_none() {
                return Err(OptionError::invalid(
                    "topic_pattern",
                    format!("the source declares no column '{name}'"),
                ));
            }
        }
        for name in properties {
            let Ok(i) = schema.index_of(name) else {
                return Err(OptionError::invalid(
                    "user_properties",
                    format!("the source declares no column '{name}'"),
                ));
            };
            if Some(i) == topic_column || levels.contains(&name.as_str()) {
                return Err(OptionError::invalid(
                    "user_properties",
                    format!("column '{name}' is filled from the topic already"),
                ));
            }
        }
        let mut columns = Vec::with_capacity(schema.fields().len());
        let mut payload_fields = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            let from = if Some(i) == topic_column {
                From::Topic
            } else if let Some(l) = levels.iter().position(|c| c == field.name()) {
                From::Level(l)
            } else if let Some(p) = properties.iter().position(|p| p == field.name()) {
                From::Property(p)
            } else {
                payload_fields.push(Arc::clone(field));
                From::Payload(payload_fields.len() - 1)
            };
            columns.push(from);
        }
        let decoder = RecordDecoder::new(Arc::new(Schema::new(payload_fields)), options)?;
        Ok(Self {
            schema: Arc::clone(schema),
            decoder,
            shown,
            pattern,
            properties: properties.to_vec(),
            columns,
        })
    }

    /// How messages become rows, as `eddy check` shows it: `json messages, topic -> column
    /// topic`.
    pub fn describe(&self) -> &str {
        &self.shown
    }

    /// Decodes messages into one batch and hands it on, the source then being at `position`;
    /// a message that becomes no row goes to the dead letters with the reason, under its origin.
    pub async fn hand_on(
        &mut self,
        messages: &[Message<'_>],
        position: Option<serde_json::Value>,
        ctx: &mut SourceContext,
    ) -> Result<(), ConnectorError> {
        if messages.is_empty() {
            return match position {
                Some(p) => ctx.flush_from(p).await,
                None => ctx.flush().await,
            };
        }
        let batch = self.decode_with_origins(messages, ctx)?;
        match (batch, position) {
            (Some(b), position) => ctx.send_from(b, position).await,
            (None, Some(p)) => ctx.flush_from(p).await,
            (None, None) => ctx.flush().await,
        }
    }

    /// The rows of `messages`; each message that becomes none goes to the dead letters with the
    /// reason, under its origin as [`Self::origin_text`] shows it.
    pub fn decode_with_origins(
        &mut self,
        messages: &[Message<'_>],
        ctx: &mut SourceContext,
    ) -> Result<Option<RecordBatch>, ConnectorError> {
        let with_properties = !self.properties.is_empty();
        self.decode(messages, ctx, |i| {
            origin_text(with_properties, messages[i].topic)
        })
    }

    /// A message's origin as dead letters name it: the topic, without MQTT 5 user properties.
    pub fn origin_text(&self, origin: &[u8]) -> String {
        origin_text(!self.properties.is_empty(), origin)
    }

    /// The rows of `messages`; each message that becomes none goes to the dead letters with the
    /// reason, under the origin `origin` gives for its index.
    pub fn decode(
        &mut self,
        messages: &[Message<'_>],
        ctx: &mut SourceContext,
        origin: impl Fn(usize) -> String,
    ) -> Result<Option<RecordBatch>, ConnectorError> {
        let rows = self
            .rows(messages)
            .map_err(|e| ConnectorError::fatal(e.to_string()))?;
        for (i, why) in &rows.rejected {
            let m = &messages[*i];
            ctx.dead_letter(&origin(*i), m.payload, why);
        }
        Ok(rows.batch)
    }

    /// The rows of `messages`, in order, and the messages rejected.
    pub fn rows(&mut self, messages: &[Message]) -> Result<Rows, ArrowError> {
        let payloads: Vec<&[u8]> = messages.iter().map(|m| m.payload).collect();
        let received: Vec<i64> = messages.iter().map(|m| m.received).collect();
        let decoded = self.decoder.decode(&payloads, Some(&received))?;
        let mut rejected = decoded.rejected;
        let Some(payload) = decoded.batch else {
            return Ok(Rows {
                batch: None,
                rejected,
            });
        };
        let accepted = decoded.accepted;
        // Only an MQTT 5 origin holds user properties: a Kafka key may hold any byte.
        let origins: Vec<(&[u8], &[u8])> = accepted
            .iter()
            .map(|&i| match self.properties.is_empty() {
                true => (messages[i].topic, &[][..]),
                false => split_origin(messages[i].topic),
            })
            .collect();
        let topics: Vec<std::borrow::Cow<str>> = origins
            .iter()
            .map(|(topic, _)| String::from_utf8_lossy(topic))
            .collect();
        let mut bad: Vec<Option<String>> = vec![None; accepted.len()];
        let mut properties: Vec<ArrayRef> = Vec::with_capacity(self.properties.len());
        if !self.properties.is_empty() {
            let found: Vec<Vec<(String, String)>> = origins
                .iter()
                .map(|(_, properties)| user_properties(properties))
                .collect();
            for name in &self.properties {
                let field = self.schema.field_with_name(name)?;
                // The last value of a property sent more than once (MQTT 5 allows repeats).
                let texts: Vec<Option<&str>> = found
                    .iter()
                    .map(|p| {
                        p.iter()
                            .rev()
                            .find(|(n, _)| n == name)
                            .map(|(_, v)| v.as_str())
                    })
                    .collect();
                let (array, errors) = parse_texts(&texts, field.data_type(), name);
                for ((b, e), text) in bad.iter_mut().zip(errors).zip(&texts) {
                    if b.is_none() {
                        *b = e.or_else(|| {
                            (text.is_none() && !field.is_nullable())
                                .then(|| format!("the message has no user property '{name}'"))
                        });
                    }
                }
                properties.push(array);
            }
        }
        let mut levels: Vec<ArrayRef> = Vec::new();
        if let Some(pattern) = &self.pattern {
            let values: Vec<Option<Vec<&str>>> = topics
                .iter()
                .zip(&mut bad)
                .map(|(t, b)| match pattern.values(t) {
                    Ok(v) => Some(v),
                    Err(why) => {
                        *b = Some(why);
                        None
                    }
                })
                .collect();
            for (l, name) in pattern.columns().iter().enumerate() {
                let field = self.schema.field_with_name(name)?;
                let texts: Vec<Option<&str>> =
                    values.iter().map(|v| v.as_ref().map(|v| v[l])).collect();
                let (array, errors) = parse_texts(&texts, field.data_type(), name);
                for (b, e) in bad.iter_mut().zip(errors) {
                    if b.is_none() {
                        *b = e;
                    }
                }
                levels.push(array);
            }
        }
        let topic_array: ArrayRef = Arc::new(StringArray::from_iter_values(
            topics.iter().map(|t| t.as_ref()),
        ));
        let mut columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|from| match *from {
                From::Payload(i) => Arc::clone(payload.column(i)),
                From::Topic => Arc::clone(&topic_array),
                From::Level(l) => Arc::clone(&levels[l]),
                From::Property(p) => Arc::clone(&properties[p]),
            })
            .collect();
        let rows = if bad.iter().all(Option::is_none) {
            accepted.len()
        } else {
            let keep: BooleanArray = bad.iter().map(|b| Some(b.is_none())).collect();
            columns = columns
                .iter()
                .map(|c| arrow::compute::filter(c, &keep))
                .collect::<Result<_, _>>()?;
            for (i, why) in accepted.iter().zip(bad) {
                if let Some(why) = why {
                    rejected.push((*i, why));
                }
            }
            rejected.sort_by_key(|(i, _)| *i);
            keep.true_count()
        };
        if rows == 0 {
            return Ok(Rows {
                batch: None,
                rejected,
            });
        }
        Ok(Rows {
            batch: Some(RecordBatch::try_new(Arc::clone(&self.schema), columns)?),
            rejected,
        })
    }
}

/// `json messages, topic -> column topic, sensors/{device_id}/{metric} -> device_id, metric`.
fn describe(schema: &Schema, origins: &Origins, options: &DecodeOptions) -> String {
    let mut shown = format!("{} messages", options.format.describe());
    if let Some(i) = origins.column {
        shown.push_str(&format!(
            ", {} -> column {}",
            origins.name,
            schema.field(i).name()
        ));
    }
    if let Some((text, pattern)) = &origins.pattern {
        shown.push_str(&format!(", {text} -> {}", pattern.columns().join(", ")));
    }
    if !origins.properties.is_empty() {
        shown.push_str(&format!(
            ", user properties -> {}",
            origins.properties.join(", ")
        ));
    }
    shown
}

fn origin_text(with_properties: bool, origin: &[u8]) -> String {
    let origin = match with_properties {
        true => split_origin(origin).0,
        false => origin,
    };
    String::from_utf8_lossy(origin).into_owned()
}

/// A message's origin taken apart: the topic, and what follows it (MQTT 5 user properties, each
/// as `\0name\0value`; empty when there are none).
pub fn split_origin(origin: &[u8]) -> (&[u8], &[u8]) {
    match origin.iter().position(|&b| b == 0) {
        Some(at) => origin.split_at(at),
        None => (origin, &[]),
    }
}

/// The user properties after a topic, as [`split_origin`] gives them.
fn user_properties(after_topic: &[u8]) -> Vec<(String, String)> {
    let mut parts = after_topic.split(|&b| b == 0).skip(1);
    let mut found = Vec::new();
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        found.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    found
}

/// The `topic` column of an MQTT source: the one named by `topic_column`, else a declared `topic`.
pub fn topic_column(schema: &Schema, named: Option<&str>) -> Result<Option<usize>, OptionError> {
    origin_column(schema, "topic", named)
}

/// The column that receives where each message was published (`what`: `topic`, `subject`,
/// `routing_key`): the one named by the option `<what>_column`, else a declared column `<what>`.
pub fn origin_column(
    schema: &Schema,
    what: &str,
    named: Option<&str>,
) -> Result<Option<usize>, OptionError> {
    let option = format!("{what}_column");
    let at = match named {
        Some(name) => Some(schema.index_of(name).map_err(|_| {
            OptionError::invalid(&option, format!("the source declares no column '{name}'"))
        })?),
        None => schema.index_of(what).ok(),
    };
    if let Some(i) = at
        && schema.field(i).data_type() != &DataType::Utf8
    {
        return Err(OptionError::invalid(
            &option,
            format!(
                "column '{}' receives the {}, so it must be TEXT",
                schema.field(i).name(),
                what.replace('_', " ")
            ),
        ));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;
    use arrow::datatypes::{Field, TimeUnit};
    use arrow::util::display::array_value_to_string;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, true),
            Field::new("value", DataType::Float64, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]))
    }

    fn text(batch: &RecordBatch, column: &str) -> Vec<String> {
        let c = batch.column_by_name(column).expect("column");
        (0..c.len())
            .map(|i| array_value_to_string(c, i).expect("value"))
            .collect()
    }

    #[test]
    fn raw_payloads_with_columns_from_the_topic_levels() {
        let pattern = TopicPattern::parse("sensors/{device_id}/{metric}").expect("pattern");
        let options = DecodeOptions {
            format: Format::Raw,
            max_records: 100,
            max_record_bytes: 1 << 20,
            ..Default::default()
        };
        let origins = Origins {
            name: "topic",
            pattern: Some(("sensors/{device_id}/{metric}".into(), pattern)),
            ..Default::default()
        };
        let mut rows = MessageRows::new(&schema(), origins, &options).expect("rows");
        assert_eq!(
            rows.describe(),
            "raw values messages, sensors/{device_id}/{metric} -> device_id, metric"
        );
        let out = rows
            .rows(&[
                Message {
                    topic: b"sensors/boiler-7/temp",
                    payload: b"81.5",
                    received: 1_767_225_600_000,
                },
                Message {
                    topic: b"sensors/boiler-7",
                    payload: b"80",
                    received: 1_767_225_601_000,
                },
                Message {
                    topic: b"sensors/boiler-8/pressure",
                    payload: b"high",
                    received: 1_767_225_602_000,
                },
                Message {
                    topic: b"sensors/boiler-9/temp",
                    payload: b"79.25",
                    received: 1_767_225_603_000,
                },
            ])
            .expect("decoded");
        let batch = out.batch.expect("rows");
        assert_eq!(text(&batch, "device_id"), ["boiler-7", "boiler-9"]);
        assert_eq!(text(&batch, "metric"), ["temp", "temp"]);
        assert_eq!(text(&batch, "value"), ["81.5", "79.25"]);
        assert_eq!(
            text(&batch, "ts"),
            ["2026-01-01T00:00:00", "2026-01-01T00:00:03"]
        );
        let reasons: Vec<(usize, &str)> =
            out.rejected.iter().map(|(i, r)| (*i, r.as_str())).collect();
        assert_eq!(reasons.len(), 2);
        assert_eq!(reasons[0].0, 1);
        assert!(reasons[0].1.contains("has 2 levels"), "{reasons:?}");
        assert_eq!(reasons[1].0, 2);
        assert!(
            reasons[1].1.contains("'high' is not a Float64"),
            "{reasons:?}"
        );
    }

    #[test]
    fn user_properties_after_the_topic_fill_their_columns() {
        let wanted = ["device_id".to_string(), "metric".to_string()];
        let origin = |properties: &[(&str, &str)]| {
            let properties: Vec<(String, String)> = properties
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            crate::mqtt::with_user_properties(b"plant/m1", &properties, &wanted)
        };
        let full = origin(&[
            ("device_id", "boiler-7"),
            ("firmware", "2.4"),
            ("metric", "temp"),
            ("metric", "pressure"),
        ]);
        assert_eq!(
            &full[..],
            b"plant/m1\0device_id\0boiler-7\0metric\0temp\0metric\0pressure"
        );
        assert_eq!(split_origin(&full).0, b"plant/m1");
        assert_eq!(split_origin(b"plant/m1"), (&b"plant/m1"[..], &b""[..]));
        let no_metric = origin(&[("device_id", "boiler-8")]);
        let bare = origin(&[]);

        let options = DecodeOptions::messages(Format::Json, None, None, Vec::new(), 100, 1 << 20);
        let origins = Origins {
            name: "topic",
            properties: wanted.to_vec(),
            ..Default::default()
        };
        let mut rows = MessageRows::new(&schema(), origins, &options).expect("rows");
        let message = |topic, payload| Message {
            topic,
            payload,
            received: 0,
        };
        let out = rows
            .rows(&[
                message(&full, br#"{"value": 1.5, "ts": 0}"#),
                message(&no_metric, br#"{"value": 2.5, "ts": 0}"#),
                message(&bare, br#"{"value": 3.5, "ts": 0}"#),
            ])
            .expect("decoded");
        // device_id is NOT NULL: the message without it is rejected.
        assert_eq!(out.rejected.len(), 1, "{:?}", out.rejected);
        assert_eq!(out.rejected[0].0, 2);
        assert!(out.rejected[0].1.contains("no user property 'device_id'"));
        let batch = out.batch.expect("rows");
        assert_eq!(text(&batch, "device_id"), ["boiler-7", "boiler-8"]);
        assert_eq!(text(&batch, "metric"), ["pressure", ""]);
        assert_eq!(text(&batch, "value"), ["1.5", "2.5"]);
    }
}
