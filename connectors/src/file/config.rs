//! Options of the file connector: every field documented (the README's option table follows
//! these comments), unknown options refused.

#![deny(missing_docs)]

use std::path::PathBuf;

use serde::Deserialize;

use crate::format::Format;

/// `CREATE SOURCE ... WITH (connector = 'file', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// The file to read, one record per line; relative paths are from the working directory.
    pub path: PathBuf,
    /// How lines are decoded: `json` (one object; a column may name a JSON path,
    /// `temp = '$.payload.temp'`), `csv` or `raw` (the line is one value).
    #[serde(default)]
    pub format: Format,
    /// CSV: the field separator (`,`).
    pub delimiter: Option<char>,
    /// CSV: the first line names the columns (`true`); `false` reads the fields in the declared
    /// order.
    #[serde(default = "default_true")]
    pub header: bool,
    /// Raw: the column each line's value fills (by default the only column that is not a
    /// TIMESTAMP).
    pub value_column: Option<String>,
    /// Rows per batch handed to the queries.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Lines longer than this go to the dead letters unread.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
}

/// `CREATE SINK ... WITH (connector = 'file', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to write, one row per line; created if missing.
    pub path: PathBuf,
    /// How rows are encoded: `json` (one object per line), `csv` (no header) or `raw` (one value
    /// per line).
    #[serde(default)]
    pub format: Format,
    /// Raw: the column written (by default the rows' only column).
    pub value_column: Option<String>,
    /// `append` (the default) keeps what the file holds; `truncate` empties it at start.
    #[serde(default)]
    pub mode: WriteMode,
}

/// What a file sink does with a file that exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Keep what the file holds and write after it (a restarted run adds to its alerts).
    #[default]
    Append,
    /// Empty the file at start.
    Truncate,
}

fn default_true() -> bool {
    true
}

fn default_batch_size() -> usize {
    8192
}

/// `CREATE TABLE ... WITH (connector = 'file', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTableConfig {
    /// The file holding the table: CSV with a header line, or JSON lines.
    pub path: PathBuf,
    /// `csv` or `json`; by default taken from the file's extension (`.csv` is CSV).
    pub format: Option<TableFormat>,
    /// The CSV field separator.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
}

/// How a table file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    Json,
}

fn default_delimiter() -> char {
    ','
}

pub(crate) fn default_max_record_bytes() -> usize {
    crate::format::json::DEFAULT_MAX_RECORD_BYTES
}
