//! What planning hands the operator: the pattern program, the conditions and measures as
//! DataFusion expressions, and what each reads of a match.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use super::pattern::{Program, SkipTo};
use crate::time::Millis;

/// What a measure reads of a match.
#[derive(Debug, Clone)]
pub enum NavKind {
    /// `FIRST(A.x, n)`: the value `n` rows after the first of the rows read.
    First(usize),
    /// `LAST(A.x, n)`: the value `n` rows before the last of the rows read.
    Last(usize),
    /// An aggregate over the rows read, whose values are cast to `input` first (as DataFusion
    /// coerces an aggregate's argument: `AVG` of a `BIGINT` reads `DOUBLE`s).
    Aggregate {
        function: Arc<datafusion::physical_expr::aggregate::AggregateFunctionExpr>,
        input: datafusion::arrow::datatypes::DataType,
    },
    CountRows,
    MatchNumber,
    Classifier,
}

#[derive(Debug, Clone)]
pub struct Nav {
    pub kind: NavKind,
    /// The variables whose rows it reads: one, or the members of a `SUBSET`; `None`: every row of
    /// the match.
    pub var: Option<Vec<usize>>,
    pub column: Option<usize>,
    pub data_type: datafusion::arrow::datatypes::DataType,
    /// Physical navigation from the row `First`/`Last` lands on: `PREV(LAST(A.x), 2)` is -2,
    /// `NEXT(FIRST(A.x))` is 1; it reaches rows of the partition outside the match (NULL beyond
    /// the partition).
    pub physical: i64,
    /// `FINAL`: over the whole match, even on its earlier rows in `ALL ROWS PER MATCH` (otherwise
    /// running: over the match up to the row being output).
    pub final_: bool,
}

impl Nav {
    /// Whether it reads the rows mapped to variable `v`.
    pub fn reads(&self, v: usize) -> bool {
        self.var.as_ref().is_none_or(|vars| vars.contains(&v))
    }
    /// Rows before the one it lands on that the nav may read (`PREV`).
    pub fn reads_back(&self) -> u64 {
        (-self.physical).max(0) as u64
    }

    /// Rows after the one it lands on that the nav may read (`NEXT`).
    pub fn reads_ahead(&self) -> u64 {
        self.physical.max(0) as u64
    }
}

/// What `ALL ROWS PER MATCH` does with empty matches and with rows no match maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyMatches {
    /// `SHOW EMPTY MATCHES` (the default): one row per empty match, of the row where it starts.
    Show,
    /// `OMIT EMPTY MATCHES`: no row for them.
    Omit,
    /// `WITH UNMATCHED ROWS`: empty matches shown, and rows in no match output with NULL measures.
    WithUnmatched,
}

/// `ONE ROW PER MATCH` or `ALL ROWS PER MATCH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchRows {
    OneRow,
    /// Each row of a match, with the ordering column and the input's remaining columns (`rest`).
    AllRows {
        empty: EmptyMatches,
        order: usize,
        rest: Vec<usize>,
    },
}

/// Everything the operator needs of a planned `MATCH_RECOGNIZE`.
#[derive(Clone)]
pub struct MatchSpec {
    /// The schema of the rows the operator takes: the input's columns, then the event time.
    pub input: SchemaRef,
    pub vars: Vec<String>,
    pub program: Arc<Program>,
    pub partition: Vec<usize>,
    pub prev: Vec<(usize, u32)>,
    pub defines: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// What conditions read of the partial match, and which of them each variable's reads.
    pub ctx: Vec<Nav>,
    pub define_ctx: Vec<Vec<usize>>,
    pub navs: Vec<Nav>,
    /// Over the partition columns, then one column per nav.
    pub measure_schema: SchemaRef,
    pub measures: Vec<Arc<dyn PhysicalExpr>>,
    pub skip: SkipTo,
    pub rows_per_match: MatchRows,
    pub within: Option<Millis>,
    /// Output schema: partition columns, (ordering column,) measures, (remaining columns,) then
    /// the event time.
    pub schema: SchemaRef,
    /// Partial matches alive at once per partition.
    pub max_partial_matches: usize,
}

impl MatchSpec {
    /// `ALL ROWS PER MATCH WITH UNMATCHED ROWS`: rows no match maps are output too.
    pub fn with_unmatched_rows(&self) -> bool {
        matches!(
            self.rows_per_match,
            MatchRows::AllRows {
                empty: EmptyMatches::WithUnmatched,
                ..
            }
        )
    }
}
