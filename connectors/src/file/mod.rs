//! Files: a source that replays JSON lines (and ends at the end of the file), a sink that writes
//! JSON lines, and reference tables read from CSV or JSON lines.

pub mod config;
mod sink;
mod source;
mod table;

pub use sink::FileSink;
pub use source::FileSource;
pub use table::FileTable;
