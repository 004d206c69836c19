//! Standard output: rows as JSON lines, or as readable text.

pub mod config;
mod sink;

pub use sink::{StdoutSink, text_lines};
