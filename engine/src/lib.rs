//! # Eddy's engine
//!
//! A query file declares sources, sinks and continuous queries; the engine parses it, plans each
//! query with DataFusion into a pipeline of streaming operators, and runs the pipelines over the
//! batches its sources deliver. It does no I/O of its own: connectors implement [`Source`] and
//! [`Sink`] and are registered in a [`ConnectorRegistry`].
//!
//! # Layout
//! The modules stack in layers; each uses only those below it (`tests/layers.rs` checks it):
//!
//! 1. Foundations, used by everything:
//!    - [`error`]: [`SqlError`], [`Diagnostics`], [`EngineError`], [`ConnectorError`].
//!    - [`time`]: event time, watermarks, window alignment, intervals, durations as shown.
//!    - [`message`]: [`message::Message`] (batches, watermarks, barriers, end) and what sinks get.
//!    - [`fanout`]: one stream sent to every query that reads it.
//!    - [`hash`]: FNV-1a, the stable hash of alert ids, fingerprints and checksums.
//!    - [`options`]: `WITH (...)` options and their typed, option-naming deserialization.
//!    - [`metrics`]: the counters of sources, queries, sinks and checkpoints.
//!    - [`checkpoint`]: operator state and source positions on disk, to resume from.
//!    - [`sql`]: parsing a query file (`CREATE SOURCE`, `CREATE SINK`, `CREATE TABLE`,
//!      `CREATE VIEW`, `INSERT INTO`, `SELECT`; `sql::row_pattern`: the MATCH_RECOGNIZE syntax
//!      sqlparser lacks, rewritten into syntax it reads).
//! 2. [`ops`]: the operators (scan, filter, project, window aggregate over TUMBLE/HOP panes,
//!    sessions, OVER windows, lookup and interval joins, union, `ops::match_recognize` with its
//!    pattern matcher) and the [`ops::Pipeline`] that runs them, one branch per input meeting in
//!    an [`ops::MultiInputOperator`].
//! 3. [`connector`]: the [`Source`] / [`Sink`] / [`Table`] traits, the [`ConnectorRegistry`], and
//!    the [`SourceContext`] a running source hands its rows to.
//! 4. [`plan`]: planning statements into a [`plan::Plan`]: window calls, `MATCH_RECOGNIZE`,
//!    DataFusion's logical plan lowered into operators node kind by node kind, errors placed at
//!    `file:line:col`.
//! 5. [`runtime`]: [`start`] runs a plan as tasks and channels (sources, views and queries as a
//!    DAG, table loaders, idle clocks, checkpoints) behind a [`RunningEngine`] handle.

#![deny(clippy::clone_on_ref_ptr)]

pub mod checkpoint;
pub mod connector;
pub mod error;
pub mod fanout;
pub mod hash;
pub mod message;
pub mod metrics;
pub mod ops;
pub mod options;
pub mod plan;
pub mod runtime;
pub mod sql;
pub mod time;

pub use connector::{
    ConnectorRegistry, Sink, SinkSpec, Source, SourceContext, SourceSpec, Table, TableSpec,
};
pub use error::{ConnectorError, Diagnostics, EngineError, Location, SqlError};
pub use options::{OptionError, Options};
pub use plan::{Plan, Planner, plan_file, plan_script};
pub use runtime::{EngineStatus, RunningEngine, Written, start};
