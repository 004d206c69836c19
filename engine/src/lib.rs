//! # Eddy's engine
//!
//! A query file declares sources, sinks and continuous queries; the engine parses it, plans each
//! query with DataFusion into a pipeline of streaming operators, and runs the pipelines over the
//! batches its sources deliver. It does no I/O of its own: connectors implement [`Source`] and
//! [`Sink`] and are registered in a [`ConnectorRegistry`].
//!
//! # Layout
//! - [`sql`]: parsing a query file (`CREATE SOURCE`, `CREATE SINK`, `CREATE TABLE`, `CREATE VIEW`,
//!   `INSERT INTO`, `SELECT`).
//! - [`plan`]: planning statements into a [`plan::Plan`]; window calls, DataFusion's logical plan
//!   walked into operators, errors placed at `file:line:col`.
//! - [`ops`]: the operators (scan, filter, project, window aggregate over TUMBLE/HOP panes,
//!   sessions, OVER windows, lookup and interval joins) and the [`ops::Pipeline`] that runs them,
//!   with one branch per input where streams meet (UNION ALL, joins).
//! - [`time`]: event time, watermarks, window alignment.
//! - [`runtime`]: tasks and channels that run a plan (sources, views and queries as a DAG, table
//!   loaders, idle clocks); the [`SourceContext`] sources push to; metrics.
//! - [`checkpoint`]: operator state and source positions on disk, to resume from.
//! - [`connector`]: the [`Source`] / [`Sink`] / [`Table`] traits and the [`ConnectorRegistry`].
//! - [`options`]: `WITH (...)` options and their typed, option-naming deserialization.
//! - [`error`]: [`SqlError`], [`Diagnostics`], [`EngineError`].
//! - [`hash`]: FNV-1a, the stable hash of alert ids, fingerprints and checksums.

#![deny(clippy::clone_on_ref_ptr)]

pub mod checkpoint;
pub mod connector;
pub mod error;
pub mod hash;
pub mod ops;
pub mod options;
pub mod plan;
pub mod runtime;
pub mod sql;
pub mod time;

pub use connector::{
    ConnectorError, ConnectorRegistry, Sink, SinkSpec, Source, SourceSpec, Table, TableSpec,
};
pub use error::{Diagnostics, EngineError, Location, SqlError};
pub use options::{OptionError, Options};
pub use plan::{Plan, Planner, plan_file, plan_script};
pub use runtime::{RunningEngine, SourceContext, start};
