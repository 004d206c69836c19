//! The statements of a query file as parsed, before planning.

use datafusion::sql::sqlparser::ast::{ColumnDef, Expr, Ident, Query};

use crate::error::Location;
use crate::options::Options;

/// One statement of a query file.
#[derive(Debug, Clone)]
pub enum Statement {
    CreateSource(Box<CreateSource>),
    CreateSink(CreateSink),
    CreateView(CreateView),
    CreateTable(Box<CreateTable>),
    Insert(Insert),
    /// A bare query: its rows go to standard output.
    Select(Select),
}

impl Statement {
    pub fn location(&self) -> Location {
        match self {
            Self::CreateSource(s) => s.location,
            Self::CreateSink(s) => s.location,
            Self::CreateView(s) => s.location,
            Self::CreateTable(s) => s.location,
            Self::Insert(s) => s.location,
            Self::Select(s) => s.location,
        }
    }
}

/// `CREATE SOURCE name (columns..., WATERMARK FOR col AS expr) WITH (options)`.
#[derive(Debug, Clone)]
pub struct CreateSource {
    pub name: Ident,
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<WatermarkDecl>,
    pub options: Options,
    pub location: Location,
}

/// `WATERMARK FOR ts AS ts - INTERVAL '2' SECOND`.
#[derive(Debug, Clone)]
pub struct WatermarkDecl {
    pub column: Ident,
    pub expr: Expr,
    pub location: Location,
}

/// `CREATE SINK name WITH (options)`.
#[derive(Debug, Clone)]
pub struct CreateSink {
    pub name: Ident,
    pub options: Options,
    pub location: Location,
}

/// `CREATE TABLE name (columns...) WITH (options)`: reference data (a limit per device) that
/// streams are joined with, reloaded now and then.
#[derive(Debug, Clone)]
pub struct CreateTable {
    pub name: Ident,
    pub columns: Vec<ColumnDef>,
    pub options: Options,
    pub location: Location,
}

/// `CREATE VIEW name AS SELECT ...`: a continuous query whose rows other queries read.
#[derive(Debug, Clone)]
pub struct CreateView {
    pub name: Ident,
    pub query: Box<Query>,
    pub location: Location,
}

/// `INSERT INTO sink SELECT ...`.
#[derive(Debug, Clone)]
pub struct Insert {
    pub sink: Ident,
    pub query: Box<Query>,
    pub location: Location,
}

/// `SELECT ...` with no `INSERT INTO`.
#[derive(Debug, Clone)]
pub struct Select {
    pub query: Box<Query>,
    pub location: Location,
}
