//! Topic templates: `alerts/overheat/{device_id}` gives each row its own topic.

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Column(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<Part>,
}

impl TopicTemplate {
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in topic '{template}'"))?;
            let column = after[..close].trim();
            if column.is_empty() {
                return Err(format!("empty '{{}}' in topic '{template}'"));
            }
            parts.push(Part::Column(column.to_string()));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        let t = Self { parts };
        if t.parts
            .iter()
            .any(|p| matches!(p, Part::Text(s) if s.contains(['+', '#'])))
        {
            return Err(format!(
                "topic '{template}' has a wildcard (+ or #); a published topic cannot"
            ));
        }
        if t.parts.is_empty() {
            return Err("the topic is empty".into());
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
                    "the topic template uses {{{c}}}, but the query's columns are: {}",
                    names.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The topic of every row of `batch`. Values are written as text, with `+`, `#` and `/` replaced
    /// by `_` so that a value cannot add topic levels or wildcards.
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
                        ArrowError::SchemaError(format!("topic column '{c}' is missing"))
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
                        topic.extend(value.chars().map(|c| match c {
                            '+' | '#' | '/' | '\0' => '_',
                            c => c,
                        }));
                    }
                    (Part::Column(_), None) => {}
                }
            }
            topics.push(topic);
        }
        Ok(topics)
    }
}

impl std::fmt::Display for TopicTemplate {
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
        let t = TopicTemplate::parse("alerts/{device_id}/temp").unwrap();
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
        let missing = TopicTemplate::parse("alerts/{device}").unwrap();
        assert_eq!(
            missing.check(&schema).unwrap_err(),
            "the topic template uses {device}, but the query's columns are: device_id, v"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(
            TopicTemplate::parse("alerts/{device")
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            TopicTemplate::parse("alerts/+/x")
                .unwrap_err()
                .contains("wildcard")
        );
        assert_eq!(TopicTemplate::parse("a/b").unwrap().to_string(), "a/b");
    }
}
