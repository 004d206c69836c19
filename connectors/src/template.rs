//! Templates of where each row goes: an MQTT topic `alerts/overheat/{device_id}`, a NATS subject
//! `alerts.{severity}.{device_id}`, an AMQP routing key. A `{column}` is replaced by the row's value
//! as text, with the characters that would add a level or a wildcard replaced by `_`.

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Column(String),
}

/// What a template names, and the characters its text may not hold and its values may not add.
#[derive(Debug, PartialEq, Eq)]
pub struct Syntax {
    /// `topic`, `subject`, `routing key`.
    what: &'static str,
    /// Characters a published name cannot hold, as they are shown in an error.
    wildcards: &'static [char],
    /// Characters replaced by `_` in a column's value.
    replaced: &'static [char],
}

/// MQTT topics: `/` separates levels, `+` and `#` are wildcards.
pub const MQTT_TOPIC: Syntax = Syntax {
    what: "topic",
    wildcards: &['+', '#'],
    replaced: &['+', '#', '/', '\0'],
};

/// NATS subjects: `.` separates tokens, `*` and `>` are wildcards, whitespace is not allowed.
pub const NATS_SUBJECT: Syntax = Syntax {
    what: "subject",
    wildcards: &['*', '>', ' ', '\t', '\r', '\n'],
    replaced: &['.', '*', '>', ' ', '\t', '\r', '\n', '\0'],
};

/// AMQP routing keys: `.` separates the words a topic exchange's bindings match.
pub const AMQP_ROUTING_KEY: Syntax = Syntax {
    what: "routing key",
    wildcards: &[],
    replaced: &['.'],
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    syntax: &'static Syntax,
}

impl Template {
    /// A template of no text: every row gets `""` (an AMQP fanout or headers exchange's key).
    pub fn empty() -> Self {
        Self {
            parts: Vec::new(),
            syntax: &AMQP_ROUTING_KEY,
        }
    }

    /// An MQTT topic template.
    pub fn topic(template: &str) -> Result<Self, String> {
        Self::parse(template, &MQTT_TOPIC)
    }

    pub fn parse(template: &str, syntax: &'static Syntax) -> Result<Self, String> {
        let what = syntax.what;
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in {what} '{template}'"))?;
            let column = after[..close].trim();
            if column.is_empty() {
                return Err(format!("empty '{{}}' in {what} '{template}'"));
            }
            parts.push(Part::Column(column.to_string()));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        let t = Self { parts, syntax };
        if let Some(c) = t.parts.iter().find_map(|p| match p {
            Part::Text(s) => s.chars().find(|c| syntax.wildcards.contains(c)),
            Part::Column(_) => None,
        }) {
            let shown: Vec<String> = syntax.wildcards.iter().map(|c| format!("{c:?}")).collect();
            return Err(format!(
                "{what} '{template}' has {c:?}, a wildcard or a character a published {what} cannot hold ({})",
                shown.join(", ")
            ));
        }
        if t.parts.is_empty() {
            return Err(format!("the {what} is empty"));
        }
        Ok(t)
    }

    /// Checks that every `{column}` is a column of `schema`.
    pub fn check(&self, schema: &Schema) -> Result<(), String> {
        for p in &self.parts {
            if let Part::Column(c) = p
                && schema.column_with_name(c).is_none()
            {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(format!(
                    "the {} template uses {{{c}}}, but the query's columns are: {}",
                    self.syntax.what,
                    names.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The name of every row of `batch`. Values are written as text, with the characters that
    /// would add a level or a wildcard (`+`, `#` and `/` in a topic) replaced by `_`.
    pub fn render(&self, batch: &RecordBatch) -> Result<Vec<String>, ArrowError> {
        let rows = batch.num_rows();
        if !self.parts.iter().any(|p| matches!(p, Part::Column(_))) {
            let topic: String = self
                .parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) | Part::Column(t) => t.as_str(),
                })
                .collect();
            return Ok(vec![topic; rows]);
        }
        let options = FormatOptions::default().with_null("null");
        let mut formatters = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            formatters.push(match p {
                Part::Column(c) => {
                    let column = batch.column_by_name(c).ok_or_else(|| {
                        ArrowError::SchemaError(format!("template column '{c}' is missing"))
                    })?;
                    Some(ArrayFormatter::try_new(column.as_ref(), &options)?)
                }
                Part::Text(_) => None,
            });
        }
        let mut topics = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut topic = String::new();
            for (p, f) in self.parts.iter().zip(&formatters) {
                match (p, f) {
                    (Part::Text(t), _) => topic.push_str(t),
                    (Part::Column(_), Some(f)) => {
                        let value = f.value(row).to_string();
                        let replaced = self.syntax.replaced;
                        topic.extend(
                            value
                                .chars()
                                .map(|c| if replaced.contains(&c) { '_' } else { c }),
                        );
                    }
                    (Part::Column(_), None) => {}
                }
            }
            topics.push(topic);
        }
        Ok(topics)
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.parts {
            match p {
                Part::Text(t) => write!(f, "{t}")?,
                Part::Column(c) => write!(f, "{{{c}}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field};
    use std::sync::Arc;

    #[test]
    fn each_row_gets_its_topic() {
        let t = Template::topic("alerts/{device_id}/temp").unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new("v", DataType::Float64, true),
        ]));
        let b = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![Some("d1"), Some("a/b+#"), None])),
                Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])),
            ],
        )
        .unwrap();
        assert_eq!(
            t.render(&b).unwrap(),
            vec!["alerts/d1/temp", "alerts/a_b__/temp", "alerts/null/temp"]
        );
        assert!(t.check(&schema).is_ok());
        let missing = Template::topic("alerts/{device}").unwrap();
        assert_eq!(
            missing.check(&schema).unwrap_err(),
            "the topic template uses {device}, but the query's columns are: device_id, v"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(
            Template::topic("alerts/{device")
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            Template::topic("alerts/+/x")
                .unwrap_err()
                .contains("wildcard")
        );
        assert_eq!(Template::topic("a/b").unwrap().to_string(), "a/b");
        assert!(
            Template::parse("alerts.>", &NATS_SUBJECT)
                .unwrap_err()
                .contains("'>'")
        );
    }

    #[test]
    fn a_value_cannot_add_a_subject_token_or_a_routing_key_word() {
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Utf8, true)]));
        let b = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(StringArray::from(vec![Some("a.b *>c")]))],
        )
        .unwrap();
        let subject = Template::parse("alerts.{d}", &NATS_SUBJECT).unwrap();
        assert_eq!(subject.render(&b).unwrap(), vec!["alerts.a_b___c"]);
        let key = Template::parse("alerts.{d}", &AMQP_ROUTING_KEY).unwrap();
        assert_eq!(key.render(&b).unwrap(), vec!["alerts.a_b *>c"]);
    }
}
