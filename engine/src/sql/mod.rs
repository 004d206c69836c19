//! The SQL front end: parsing a query file into [`ast::Statement`]s (our `CREATE SOURCE` / `CREATE SINK`
//! and `WATERMARK` by hand, everything else by sqlparser), keeping line and column of every part.

pub mod ast;
pub mod parser;
pub mod row_pattern;
pub mod window_frame;

pub use parser::parse;
