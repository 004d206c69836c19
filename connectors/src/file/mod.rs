//! Files: a source that replays JSON lines (and ends at the end of the file), a sink that writes
//! JSON lines.

pub mod config;
mod sink;
mod source;

pub use sink::FileSink;
pub use source::FileSource;
