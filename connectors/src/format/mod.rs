//! Formats: how records are turned into Arrow rows and rows into messages.

pub mod json;

use serde::Deserialize;

/// The `format` option of sources and sinks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per message or per line.
    #[default]
    Json,
}
