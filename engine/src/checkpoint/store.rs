//! Checkpoints on disk. A state directory holds complete checkpoints, one directory each:
//!
//! ```text
//! <state dir>/checkpoint-00000042/manifest.json   what was taken, when, for which plan
//! <state dir>/checkpoint-00000042/query-3.state   the operators' state of query 3
//! ```
//!
//! A checkpoint is written into `checkpoint-N.pending/`, synced, and renamed into place once
//! every part is there: a crash leaves either the whole checkpoint or a pending one, which is
//! ignored and removed. The two newest complete checkpoints are kept.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state::{STATE_FORMAT, StateReader};
use crate::error::{EngineError, Result};
use crate::time::Millis;

/// The version written into manifests and required of the checkpoints resumed from.
pub const EDDY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Complete checkpoints kept; older ones are removed.
const KEEP: usize = 2;

/// What a checkpoint records besides the operators' state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// The version of the checkpoint format.
    pub format: u32,
    /// The version of Eddy that took it: keys are stored in Arrow's row format, which only the
    /// same build is sure to read alike.
    pub eddy: String,
    pub id: u64,
    /// A fingerprint of the plan: the queries, their operators and schemas.
    pub plan: String,
    /// Wall-clock time the checkpoint completed (ms since the epoch).
    pub taken_at: Millis,
    pub sources: Vec<SourceCheckpoint>,
    /// The state file of each query that runs, by query index.
    pub queries: Vec<QueryCheckpoint>,
}

/// Where a source was, and its watermark, when the barrier left it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceCheckpoint {
    pub name: String,
    /// The connector's own position (a file's offset and line); `None` for sources that have
    /// none (MQTT: the broker redelivers what was not acknowledged).
    pub position: Option<serde_json::Value>,
    /// The largest event time seen, which the watermark follows.
    pub max_seen: Option<Millis>,
    pub watermark: Option<Millis>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryCheckpoint {
    pub index: usize,
    pub label: String,
    pub file: String,
    /// FNV-1a (64 bits, hex) of the file's bytes: damage is found before anything is decoded.
    pub checksum: String,
}

/// A state directory.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

/// A checkpoint read back from disk, checked whole before anything is restored from it.
pub struct LoadedCheckpoint {
    pub manifest: Manifest,
    /// Each query's state, by query index.
    pub queries: Vec<(usize, StateReader)>,
    /// Bytes of state read.
    pub bytes: u64,
}

impl CheckpointStore {
    /// Opens (creating it if needed) a state directory and removes checkpoints left pending.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, "cannot create", e))?;
        let store = Self {
            dir: dir.to_path_buf(),
        };
        for entry in fs::read_dir(dir).map_err(|e| io_error(dir, "cannot read", e))? {
            let path = entry.map_err(|e| io_error(dir, "cannot read", e))?.path();
            if path.extension().is_some_and(|x| x == "pending") {
                let _ = fs::remove_dir_all(&path);
            }
        }
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn complete_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("checkpoint-{id:08}"))
    }

    /// Where the parts of checkpoint `id` are written until it completes.
    pub fn pending_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("checkpoint-{id:08}.pending"))
    }

    /// The ids of the complete checkpoints, oldest first.
    fn complete_ids(&self) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, "cannot read", e))? {
            let entry = entry.map_err(|e| io_error(&self.dir, "cannot read", e))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("checkpoint-"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            ids.push(id);
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The id the next checkpoint takes.
    pub fn next_id(&self) -> Result<u64> {
        Ok(self.complete_ids()?.last().map_or(1, |id| id + 1))
    }

    /// Starts checkpoint `id`: an empty pending directory.
    pub fn begin(&self, id: u64) -> Result<PathBuf> {
        let dir = self.pending_dir(id);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, "cannot create", e))?;
        Ok(dir)
    }

    /// Writes the state of query `index` into pending checkpoint `id`: what the manifest says
    /// of it.
    pub fn write_query(
        &self,
        id: u64,
        index: usize,
        label: &str,
        bytes: &[u8],
    ) -> Result<QueryCheckpoint> {
        let file = format!("query-{index}.state");
        write_synced(&self.pending_dir(id).join(&file), bytes)?;
        Ok(QueryCheckpoint {
            index,
            label: label.to_string(),
            file,
            checksum: checksum(bytes),
        })
    }

    /// Completes checkpoint `manifest.id`: its manifest is written, and the pending directory
    /// renamed into place. Older checkpoints beyond the newest [`KEEP`] are removed.
    pub fn commit(&self, manifest: &Manifest) -> Result<PathBuf> {
        let pending = self.pending_dir(manifest.id);
        let text = serde_json::to_vec_pretty(manifest)
            .map_err(|e| EngineError::Checkpoint(format!("cannot encode the manifest: {e}")))?;
        write_synced(&pending.join("manifest.json"), &text)?;
        sync_dir(&pending)?;
        let done = self.complete_dir(manifest.id);
        fs::rename(&pending, &done).map_err(|e| io_error(&done, "cannot rename into", e))?;
        sync_dir(&self.dir)?;
        let ids = self.complete_ids()?;
        for &old in ids.iter().rev().skip(KEEP) {
            let _ = fs::remove_dir_all(self.complete_dir(old));
        }
        Ok(done)
    }

    /// Abandons pending checkpoint `id`.
    pub fn abandon(&self, id: u64) {
        let _ = fs::remove_dir_all(self.pending_dir(id));
    }

    /// The newest complete checkpoint, read and checked whole; `None` when there is none. A
    /// checkpoint that cannot be read, or was taken for another plan, is an error naming it.
    pub fn load_latest(&self, plan: &str) -> Result<Option<LoadedCheckpoint>> {
        let Some(&id) = self.complete_ids()?.last() else {
            return Ok(None);
        };
        let dir = self.complete_dir(id);
        let within = |e: EngineError| {
            EngineError::Checkpoint(format!(
                "cannot resume from {}: {}; move the directory away to start from the beginning",
                dir.display(),
                e
            ))
        };
        let load = || -> Result<LoadedCheckpoint> {
            let path = dir.join("manifest.json");
            let text = fs::read(&path).map_err(|e| io_error(&path, "cannot read", e))?;
            let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
                EngineError::Checkpoint(format!("{} is damaged: {e}", path.display()))
            })?;
            if manifest.format != STATE_FORMAT {
                return Err(EngineError::Checkpoint(format!(
                    "it has format {}, this eddy reads format {STATE_FORMAT}",
                    manifest.format
                )));
            }
            if manifest.eddy != EDDY_VERSION {
                return Err(EngineError::Checkpoint(format!(
                    "it was taken by eddy {}, this is eddy {EDDY_VERSION}",
                    manifest.eddy
                )));
            }
            if manifest.plan != plan {
                return Err(EngineError::Checkpoint(
                    "it was taken for other queries (the query file changed since)".into(),
                ));
            }
            let mut queries = Vec::new();
            let mut total = 0;
            for q in &manifest.queries {
                let path = dir.join(&q.file);
                let bytes = fs::read(&path).map_err(|e| io_error(&path, "cannot read", e))?;
                if checksum(&bytes) != q.checksum {
                    return Err(EngineError::Checkpoint(format!(
                        "{} is damaged: its checksum differs from the manifest's",
                        path.display()
                    )));
                }
                total += bytes.len() as u64;
                // Arrow's IPC reader trusts the lengths it reads: bytes that pass the checksum
                // but were not written by Eddy must not crash the start.
                let state = std::panic::catch_unwind(|| StateReader::decode(&bytes))
                    .unwrap_or_else(|_| {
                        Err(EngineError::Checkpoint(
                            "not a state file Eddy wrote".into(),
                        ))
                    })
                    .map_err(|e| EngineError::Checkpoint(format!("{}: {}", path.display(), e)))?;
                queries.push((q.index, state));
            }
            Ok(LoadedCheckpoint {
                manifest,
                queries,
                bytes: total,
            })
        };
        load().map(Some).map_err(within)
    }
}

fn checksum(bytes: &[u8]) -> String {
    format!("{:016x}", crate::hash::fnv1a_of(bytes))
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> EngineError {
    EngineError::Checkpoint(format!("{what} {}: {e}", path.display()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(|e| io_error(path, "cannot create", e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error(path, "cannot write", e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "cannot sync", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: u64, query: QueryCheckpoint) -> Manifest {
        Manifest {
            format: STATE_FORMAT,
            eddy: EDDY_VERSION.into(),
            id,
            plan: "p".into(),
            taken_at: 0,
            sources: Vec::new(),
            queries: vec![query],
        }
    }

    #[test]
    fn only_complete_checkpoints_are_loaded_and_the_two_newest_kept() {
        let dir = std::env::temp_dir().join(format!("eddy-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = CheckpointStore::open(&dir).unwrap();
        assert!(store.load_latest("p").unwrap().is_none());
        let state = super::super::StateWriter::new().encode().unwrap();
        for id in 1..=3 {
            store.begin(id).unwrap();
            let q = store.write_query(id, 0, "q", &state).unwrap();
            store.commit(&manifest(id, q)).unwrap();
        }
        // Checkpoint 4 never completes.
        store.begin(4).unwrap();
        store.write_query(4, 0, "q", &state).unwrap();
        assert_eq!(store.complete_ids().unwrap(), [2, 3]);
        let loaded = store.load_latest("p").unwrap().unwrap();
        assert_eq!(loaded.manifest.id, 3);
        let e = store.load_latest("other").err().unwrap().to_string();
        assert!(
            e.contains("checkpoint-00000003") && e.contains("other queries"),
            "{e}"
        );
        // A damaged state file is named.
        fs::write(
            store.complete_dir(3).join("query-0.state"),
            b"EDDYSTATE\x01",
        )
        .unwrap();
        let e = store.load_latest("p").err().unwrap().to_string();
        assert!(
            e.contains("query-0.state") && e.contains("checksum differs"),
            "{e}"
        );
        // Reopening removes the pending checkpoint.
        let store = CheckpointStore::open(&dir).unwrap();
        assert!(!store.pending_dir(4).exists());
        assert_eq!(store.next_id().unwrap(), 4);
        fs::remove_dir_all(&dir).unwrap();
    }
}
