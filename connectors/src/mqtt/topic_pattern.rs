//! Topic patterns: `sensors/{device_id}/{metric}` fills declared columns from a message's topic
//! levels (`sensors/boiler-7/temp` gives `device_id = 'boiler-7'`, `metric = 'temp'`), and gives
//! the filter to subscribe to (`sensors/+/+`). `+` matches a level it does not keep, a trailing
//! `#` any levels after.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Text(String),
    Column(String),
    Any,
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    levels: Vec<Level>,
}

impl TopicPattern {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let parts: Vec<&str> = pattern.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let level = match *part {
                "+" => Level::Any,
                "#" if i + 1 == parts.len() => Level::Rest,
                "#" => return Err(format!("'{pattern}': '#' must be the last level")),
                p if p.starts_with('{') && p.ends_with('}') && p.len() > 2 => {
                    Level::Column(p[1..p.len() - 1].trim().to_string())
                }
                p if p.contains(['{', '}', '+', '#']) => {
                    return Err(format!(
                        "'{pattern}': level '{p}' must be text, '+', '#' or one {{column}}"
                    ));
                }
                p => Level::Text(p.to_string()),
            };
            levels.push(level);
        }
        let parsed = Self { levels };
        let columns = parsed.columns();
        if let Some(c) = columns
            .iter()
            .enumerate()
            .find_map(|(i, c)| columns[..i].contains(c).then_some(c))
        {
            return Err(format!("'{pattern}': column {c} is named twice"));
        }
        Ok(parsed)
    }

    /// The columns the pattern fills, in order.
    pub fn columns(&self) -> Vec<&str> {
        self.levels
            .iter()
            .filter_map(|l| match l {
                Level::Column(c) => Some(c.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The filter that subscribes to every topic the pattern matches.
    pub fn filter(&self) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                Level::Text(t) => t.as_str(),
                Level::Column(_) | Level::Any => "+",
                Level::Rest => "#",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The values of the pattern's columns in `topic`, in the order of [`Self::columns`]; an
    /// error saying how the topic differs when it does not match.
    pub fn values<'t>(&self, topic: &'t str) -> Result<Vec<&'t str>, String> {
        let parts: Vec<&str> = topic.split('/').collect();
        let rest = matches!(self.levels.last(), Some(Level::Rest));
        let fixed = self.levels.len() - usize::from(rest);
        if parts.len() < fixed || (!rest && parts.len() != fixed) {
            return Err(format!(
                "topic '{topic}' has {} levels, the topic_pattern {}",
                parts.len(),
                if rest {
                    format!("{fixed} or more")
                } else {
                    fixed.to_string()
                }
            ));
        }
        let mut values = Vec::new();
        for (level, part) in self.levels.iter().zip(&parts) {
            match level {
                Level::Text(t) if t != part => {
                    return Err(format!(
                        "topic '{topic}' has '{part}' where the topic_pattern has '{t}'"
                    ));
                }
                Level::Column(_) => values.push(*part),
                _ => {}
            }
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_fill_columns_and_give_the_filter() {
        let p = TopicPattern::parse("sensors/{device_id}/+/{metric}").expect("a pattern");
        assert_eq!(p.columns(), ["device_id", "metric"]);
        assert_eq!(p.filter(), "sensors/+/+/+");
        assert_eq!(
            p.values("sensors/boiler-7/hall/temp"),
            Ok(vec!["boiler-7", "temp"])
        );
        assert!(
            p.values("sensors/boiler-7/temp")
                .unwrap_err()
                .contains("has 3 levels")
        );
        assert!(p.values("meters/b/h/t").unwrap_err().contains("'meters'"));
        let rest = TopicPattern::parse("site/{site}/#").expect("a pattern");
        assert_eq!(rest.filter(), "site/+/#");
        assert_eq!(rest.values("site/north/a/b"), Ok(vec!["north"]));
        assert!(TopicPattern::parse("a/#/b").is_err());
        assert!(TopicPattern::parse("a/x{y}").is_err());
        assert!(TopicPattern::parse("{a}/{a}").is_err());
    }
}
