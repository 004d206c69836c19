//! `WITH (key = 'value', ...)` options: where each one sits in the file, `${VAR}` expansion, and
//! deserialization into a connector's config struct (serde, `deny_unknown_fields`) with errors that
//! name the option.

use std::fmt::Display;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use crate::error::{Location, SqlError};

/// One `key = value` of a `WITH (...)` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionEntry {
    pub key: String,
    pub value: String,
    pub key_location: Location,
    pub value_location: Location,
}

/// The options of one `CREATE SOURCE` or `CREATE SINK`, in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    entries: Vec<OptionEntry>,
}

impl Options {
    /// Options from parsed entries; a key given twice is an error at its second place.
    pub fn new(entries: Vec<OptionEntry>) -> Result<Self, SqlError> {
        for (i, e) in entries.iter().enumerate() {
            if entries[..i].iter().any(|p| p.key == e.key) {
                return Err(SqlError::new(
                    e.key_location,
                    format!("option '{}' is given twice", e.key),
                ));
            }
        }
        Ok(Self { entries })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(|e| e.value.as_str())
    }

    pub fn entry(&self, key: &str) -> Option<&OptionEntry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Removes and returns an option (the engine takes its own keys before a connector sees the rest).
    pub fn take(&mut self, key: &str) -> Option<OptionEntry> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        Some(self.entries.remove(i))
    }

    pub fn iter(&self) -> impl Iterator<Item = &OptionEntry> {
        self.entries.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Builds options from `(key, value)` pairs, for code that configures connectors directly.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            entries: pairs
                .into_iter()
                .map(|(k, v)| OptionEntry {
                    key: k.to_string(),
                    value: v.to_string(),
                    key_location: Location::default(),
                    value_location: Location::default(),
                })
                .collect(),
        }
    }

    /// Sets (or replaces) an option's value, keeping its place in the file if it had one.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(e) => e.value = value.into(),
            None => self.entries.push(OptionEntry {
                key: key.to_string(),
                value: value.into(),
                key_location: Location::default(),
                value_location: Location::default(),
            }),
        }
    }

    /// Replaces `${NAME}` and `${NAME:-default}` in every value with variables from `lookup`
    /// (the process environment in `eddy run`), so secrets and addresses stay out of query files.
    pub fn expand(&mut self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<(), SqlError> {
        for e in &mut self.entries {
            e.value = expand_variables(&e.value, lookup)
                .map_err(|m| SqlError::new(e.value_location, format!("option '{}': {m}", e.key)))?;
        }
        Ok(())
    }

    /// Deserializes the options into a config struct. Values are strings in SQL; numbers, booleans
    /// and enums are parsed from them, and every error names the option it is about.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, OptionError> {
        T::deserialize(OptionsDeserializer {
            entries: &self.entries,
        })
    }

    /// Where an error about `key` should point: the value if the key exists, else nothing.
    pub fn location_of(&self, key: &str) -> Option<Location> {
        self.entry(key).map(|e| e.value_location)
    }
}

/// What SQL from an untrusted author (a rule sent over a service's API) may reach: only the
/// environment variables named (through `${VAR}` and options such as `password_env`), and only
/// files under the directories named (sources' and sinks' paths, dead letters, certificates).
#[derive(Debug, Clone, Default)]
pub struct Restriction {
    pub env: Vec<String>,
    /// Absolute directories.
    pub paths: Vec<std::path::PathBuf>,
}

/// Options whose value is a file to read or write.
const PATH_OPTIONS: &[&str] = &["path", "dead_letter", "ca_file", "cert_file", "key_file"];

impl Options {
    /// Refuses, before `${VAR}` is expanded, a variable `restriction` does not allow, or an
    /// `*_env` option naming one, naming the option.
    pub fn check_env(&self, restriction: &Restriction) -> Result<(), SqlError> {
        for e in &self.entries {
            let mut names: Vec<&str> = variables(&e.value);
            if e.key.ends_with("_env") {
                names.push(e.value.trim());
            }
            for name in names {
                if !restriction.env.iter().any(|allowed| allowed == name) {
                    return Err(SqlError::new(
                        e.value_location,
                        format!(
                            "option '{}': the environment variable {name} is not one this service lets rules read (--allow-env)",
                            e.key
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Refuses, once expanded, a file outside the directories `restriction` allows, naming the
    /// option. Relative paths are taken from `base`.
    pub fn check_paths(
        &self,
        restriction: &Restriction,
        base: &std::path::Path,
    ) -> Result<(), SqlError> {
        for e in &self.entries {
            if !PATH_OPTIONS.contains(&e.key.as_str()) {
                continue;
            }
            let path = lexical(&base.join(&e.value));
            let allowed = path
                .as_ref()
                .is_some_and(|p| restriction.paths.iter().any(|dir| p.starts_with(dir)));
            if !allowed {
                return Err(SqlError::new(
                    e.value_location,
                    format!(
                        "option '{}': '{}' is outside the directories this service lets rules use (--allow-path)",
                        e.key, e.value
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The names of the `${VAR}` references in `value`.
fn variables(value: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let inner = &after[..end];
        names.push(inner.split_once(":-").map_or(inner, |(n, _)| n));
        rest = &after[end + 1..];
    }
    names
}

/// `path` with `.` and `..` resolved without the file system; `None` when `..` climbs past the
/// root.
fn lexical(path: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

fn expand_variables(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated '${{' in '{value}'"))?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("'${{{inner}}}' is not a variable name"));
        }
        match lookup(name)
            .filter(|v| !v.is_empty())
            .or(default.map(str::to_string))
        {
            Some(v) => out.push_str(&v),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Why a set of options does not fit a connector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("unknown option '{key}'; valid options are: {}", .valid.join(", "))]
    Unknown { key: String, valid: Vec<String> },
    #[error("missing required option '{key}'")]
    Missing { key: String },
    #[error("option '{key}': {message}")]
    Invalid { key: String, message: String },
    #[error("{0}")]
    Other(String),
}

impl OptionError {
    pub fn invalid(key: &str, message: impl Display) -> Self {
        Self::Invalid {
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    /// The option the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Unknown { key, .. } | Self::Missing { key } | Self::Invalid { key, .. } => {
                Some(key)
            }
            Self::Other(_) => None,
        }
    }

    fn about(self, key: &str) -> Self {
        match self {
            Self::Other(message) => Self::Invalid {
                key: key.to_string(),
                message,
            },
            e => e,
        }
    }
}

impl de::Error for OptionError {
    fn custom<T: Display>(msg: T) -> Self {
        Self::Other(msg.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::Unknown {
            key: field.to_string(),
            valid: expected.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self::Missing {
            key: field.to_string(),
        }
    }
}

struct OptionsDeserializer<'a> {
    entries: &'a [OptionEntry],
}

impl<'de> de::Deserializer<'de> for OptionsDeserializer<'_> {
    type Error = OptionError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        visitor.visit_map(OptionsMap {
            iter: self.entries.iter(),
            current: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

struct OptionsMap<'a> {
    iter: std::slice::Iter<'a, OptionEntry>,
    current: Option<&'a OptionEntry>,
}

impl<'de> de::MapAccess<'de> for OptionsMap<'_> {
    type Error = OptionError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, OptionError> {
        match self.iter.next() {
            Some(e) => {
                self.current = Some(e);
                seed.deserialize(e.key.as_str().into_deserializer())
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, OptionError> {
        let e = self
            .current
            .take()
            .ok_or_else(|| OptionError::Other("option value without a key".into()))?;
        seed.deserialize(ValueDeserializer { value: &e.value })
            .map_err(|err| err.about(&e.key))
    }
}

/// One option's value: a string, parsed on demand into what the field wants.
struct ValueDeserializer<'a> {
    value: &'a str,
}

macro_rules! parse_number {
    ($($method:ident => $visit:ident : $ty:ty, $what:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
            let v: $ty = self.value.trim().parse().map_err(|_| {
                OptionError::Other(format!(concat!("expected ", $what, ", found '{}'"), self.value))
            })?;
            visitor.$visit(v)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for ValueDeserializer<'_> {
    type Error = OptionError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        visitor.visit_str(self.value)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        match self.value.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => visitor.visit_bool(true),
            "false" | "no" | "off" => visitor.visit_bool(false),
            _ => Err(OptionError::Other(format!(
                "expected true or false, found '{}'",
                self.value
            ))),
        }
    }

    parse_number! {
        deserialize_i8 => visit_i8: i8, "a whole number";
        deserialize_i16 => visit_i16: i16, "a whole number";
        deserialize_i32 => visit_i32: i32, "a whole number";
        deserialize_i64 => visit_i64: i64, "a whole number";
        deserialize_u8 => visit_u8: u8, "a small non-negative whole number";
        deserialize_u16 => visit_u16: u16, "a non-negative whole number";
        deserialize_u32 => visit_u32: u32, "a non-negative whole number";
        deserialize_u64 => visit_u64: u64, "a non-negative whole number";
        deserialize_f32 => visit_f32: f32, "a number";
        deserialize_f64 => visit_f64: f64, "a number";
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, OptionError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, OptionError> {
        let items = self
            .value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty());
        visitor.visit_seq(de::value::SeqDeserializer::new(items))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, OptionError> {
        visitor.visit_enum(self.value.trim().to_ascii_lowercase().into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// `1.5 hours` as 1.5 and `hours` (lower-cased); `what` names the quantity in the error.
fn number_and_unit(text: &str, what: &str) -> Result<(f64, String), String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("expected {what}, found '{text}'"))?;
    Ok((number, unit.trim().to_ascii_lowercase()))
}

/// Parses a duration such as `50ms`, `2 s`, `1 minute`, `1.5 hours`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = number_and_unit(text, "a duration such as '500ms' or '10 s'")?;
    let seconds = match unit.as_str() {
        "ms" | "millis" | "millisecond" | "milliseconds" => 0.001,
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        other => {
            return Err(format!(
                "unknown time unit '{other}' in '{text}'; use ms, s, min, h or d"
            ));
        }
    };
    Ok(Duration::from_secs_f64(number * seconds))
}

/// Parses a size such as `512MiB`, `2 GB`, `64k` or `1048576` (bytes): decimal units (kB, MB, GB)
/// count in thousands, binary ones (KiB, MiB, GiB) and the bare letters (k, m, g) in 1024s.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let (number, unit) = number_and_unit(text, "a size such as '512MiB' or '2GB'")?;
    let scale: f64 = match unit.as_str() {
        "" | "b" | "byte" | "bytes" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{text}'; use B, kB, MB, GB, KiB, MiB or GiB"
            ));
        }
    };
    let bytes = number * scale;
    if !bytes.is_finite() || bytes > usize::MAX as f64 {
        return Err(format!("size '{text}' is too large"));
    }
    Ok(bytes as usize)
}

/// `#[serde(deserialize_with = "eddy_engine::options::duration")]` for duration-valued options.
pub fn duration<'de, D: de::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    parse_duration(&s).map_err(de::Error::custom)
}

/// `#[serde(default, deserialize_with = "eddy_engine::options::optional_duration")]` for an
/// `Option<Duration>` option: absent is `None`.
pub fn optional_duration<'de, D: de::Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// `#[serde(deserialize_with = "eddy_engine::options::bytes")]` for size-valued options.
pub fn bytes<'de, D: de::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    parse_bytes(&s).map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        url: String,
        #[serde(default)]
        qos: u8,
        #[serde(default)]
        retain: bool,
        #[serde(default, deserialize_with = "duration")]
        linger: Duration,
        #[serde(default)]
        format: Format,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "lowercase")]
    enum Format {
        #[default]
        Json,
        Csv,
    }

    #[test]
    fn values_are_parsed_into_the_field_types() {
        let o = Options::from_pairs([
            ("url", "mqtt://h"),
            ("qos", "1"),
            ("retain", "TRUE"),
            ("linger", "20 ms"),
            ("format", "CSV"),
        ]);
        let c: Config = o.deserialize().unwrap();
        assert_eq!(
            c,
            Config {
                url: "mqtt://h".into(),
                qos: 1,
                retain: true,
                linger: Duration::from_millis(20),
                format: Format::Csv
            }
        );
    }

    #[test]
    fn unknown_option_names_itself_and_the_valid_ones() {
        let o = Options::from_pairs([("url", "x"), ("qoss", "1")]);
        let e = o.deserialize::<Config>().unwrap_err();
        assert_eq!(e.key(), Some("qoss"));
        assert_eq!(
            e.to_string(),
            "unknown option 'qoss'; valid options are: url, qos, retain, linger, format"
        );
    }

    #[test]
    fn bad_values_and_missing_options_name_the_option() {
        let e = Options::from_pairs([("url", "x"), ("qos", "two")])
            .deserialize::<Config>()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "option 'qos': expected a small non-negative whole number, found 'two'"
        );
        let e = Options::from_pairs([("url", "x"), ("format", "xml")])
            .deserialize::<Config>()
            .unwrap_err();
        assert_eq!(e.key(), Some("format"));
        assert!(e.to_string().contains("unknown variant `xml`"), "{e}");
        let e = Options::from_pairs([("qos", "1")])
            .deserialize::<Config>()
            .unwrap_err();
        assert_eq!(e.to_string(), "missing required option 'url'");
    }

    #[test]
    fn variables_expand_with_defaults() {
        let lookup = |name: &str| (name == "HOST").then(|| "broker".to_string());
        assert_eq!(
            expand_variables("mqtt://${HOST}:${PORT:-1883}", &lookup).unwrap(),
            "mqtt://broker:1883"
        );
        assert_eq!(
            expand_variables("${SECRET}", &lookup).unwrap_err(),
            "environment variable SECRET is not set"
        );
    }

    #[test]
    fn durations_take_common_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2 GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_bytes("1.5k").unwrap(), 1536);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(
            parse_bytes("12 parsecs")
                .unwrap_err()
                .contains("unknown size unit 'parsecs'")
        );
        assert!(parse_bytes("MiB").unwrap_err().contains("expected a size"));
        assert_eq!(parse_duration("2 s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1 minute").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("3 weeks").is_err());
    }
}
