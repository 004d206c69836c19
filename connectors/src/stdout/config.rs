//! Options of the stdout connector: every field documented, unknown options refused.

#![deny(missing_docs)]

use serde::Deserialize;

/// `CREATE SINK ... WITH (connector = 'stdout', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// `json` (one object per line, the default) or `text` (`sink  key=value key=value`).
    #[serde(default)]
    pub format: StdoutFormat,
}

/// How rows are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdoutFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// `sink  key=value key=value`, timestamps in RFC 3339: for people watching.
    Text,
}
