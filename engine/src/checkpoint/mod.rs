//! Checkpoints: the state of every operator and the position of every source, taken together
//! while the engine runs, so that a restarted engine resumes where the checkpoint was taken.
//!
//! - [`state`]: how an operator writes its state and reads it back (Arrow IPC parts).
//! - [`store`]: checkpoints on disk: a directory each, written aside and renamed into place.
//!
//! The runtime takes them (see `runtime::barriers`): a barrier enters every source's stream,
//! each query snapshots when the barrier has arrived on all of its inputs, each sink flushes when
//! it has the barrier from all of its writers, and the checkpoint completes when all have.

mod state;
mod store;

pub use state::{
    STATE_FORMAT, StateReader, StateWriter, expect_rows, expect_schema, expect_types, key_bytes,
    key_bytes_column, primitive_column, scalars_column, unfit,
};
pub use store::{
    CheckpointStore, EDDY_VERSION, LoadedCheckpoint, Manifest, QueryCheckpoint, SourceCheckpoint,
};
