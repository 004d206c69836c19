//! Errors: [`SqlError`] points at a line and column of a query file, [`Diagnostics`] collects them per
//! file, [`EngineError`] is what can go wrong while queries run.

use std::fmt;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// A line and column in a query file, both starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Location {
    pub line: u64,
    pub column: u64,
}

impl Location {
    pub fn new(line: u64, column: u64) -> Self {
        Self { line, column }
    }
}

impl From<datafusion::sql::sqlparser::tokenizer::Location> for Location {
    fn from(l: datafusion::sql::sqlparser::tokenizer::Location) -> Self {
        Self::new(l.line, l.column)
    }
}

impl From<datafusion::common::Location> for Location {
    fn from(l: datafusion::common::Location) -> Self {
        Self::new(l.line, l.column)
    }
}

impl From<&datafusion::sql::sqlparser::ast::Ident> for Location {
    fn from(i: &datafusion::sql::sqlparser::ast::Ident) -> Self {
        i.span.start.into()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A problem in a query file, at a place in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct SqlError {
    pub location: Location,
    pub message: String,
}

impl SqlError {
    pub fn new(location: impl Into<Location>, message: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            message: message.into(),
        }
    }
}

/// Every problem found in one query file. Displays as one `FILE:LINE:COL: message` line per problem.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Diagnostics {
    pub file: String,
    pub errors: Vec<SqlError>,
}

impl Diagnostics {
    pub fn new(file: impl Into<String>, errors: Vec<SqlError>) -> Self {
        Self {
            file: file.into(),
            errors,
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: {}", self.file, e.location, e.message)?;
        }
        Ok(())
    }
}

/// What can go wrong while queries run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error("internal error: {0}")]
    Internal(String),
    /// A limit of the engine was reached (`--max-state-rows`).
    #[error("{0}")]
    Limit(String),
    /// A checkpoint could not be written, or cannot be resumed from.
    #[error("{0}")]
    Checkpoint(String),
    /// A part stopped because the part it feeds had stopped: that part's error tells why.
    #[error("{0}")]
    Stopped(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// A failure talking to the outside world. `retryable` says whether trying again may help
/// (a broker that is down) or not (a file that does not exist).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    pub message: String,
    pub retryable: bool,
    /// A sink's write that failed for some rows only: their indices in the batch (the others
    /// were written). `None`: the whole write failed.
    pub rows: Option<Vec<usize>>,
}

impl ConnectorError {
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            rows: None,
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            rows: None,
        }
    }

    /// The failure is of these rows of the batch only.
    pub fn with_rows(mut self, rows: Vec<usize>) -> Self {
        self.rows = Some(rows);
        self
    }
}
