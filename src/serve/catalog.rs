//! The catalog of rules as it is kept on disk: every rule's name, whether it is paused, and each
//! of its versions (SQL, when it was made, the fingerprint of its plan), in `STATE/rules.json`,
//! written to a temporary file, synced and renamed over the old one, so that a crash leaves the
//! old catalog or the new one, never half of either. Every change is also appended to the audit
//! trail, `STATE/audit.jsonl`, one JSON object a line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One rule: a named piece of SQL, in versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    /// Paused by a user: not started again when the service starts.
    pub paused: bool,
    /// Oldest first; the last one is the rule.
    pub versions: Vec<Version>,
}

impl Rule {
    pub fn current(&self) -> &Version {
        // A rule is made with its first version and never loses it.
        &self.versions[self.versions.len() - 1]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Version {
    pub version: u32,
    pub sql: String,
    /// When it was made, RFC 3339.
    pub created: String,
    /// The fingerprint of its plan: a new version whose fingerprint differs cannot resume from
    /// the old one's checkpoints.
    pub fingerprint: String,
}

/// One change, as the audit trail keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// RFC 3339.
    pub time: String,
    /// The name of the token the change was asked with (`anonymous` without tokens).
    pub who: String,
    /// `create`, `replace`, `pause`, `resume`, `delete`.
    pub action: String,
    pub rule: String,
    pub old_version: Option<u32>,
    pub new_version: Option<u32>,
}

/// The rules, and the files they are kept in.
pub struct Catalog {
    dir: PathBuf,
    pub rules: BTreeMap<String, Rule>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    rules: Vec<Rule>,
}

impl Catalog {
    /// The catalog kept in `dir` (an empty one if there is none yet).
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("rules.json");
        let rules = match std::fs::read(&path) {
            Ok(bytes) => {
                let on_disk: OnDisk = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is damaged", path.display()))?;
                on_disk
                    .rules
                    .into_iter()
                    .map(|r| (r.name.clone(), r))
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            rules,
        })
    }

    /// Writes the catalog: to a temporary file, synced, then renamed over the old one.
    pub fn save(&self) -> Result<()> {
        let path = self.dir.join("rules.json");
        let temporary = self.dir.join("rules.json.new");
        let on_disk = OnDisk {
            rules: self.rules.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&on_disk)?;
        let mut file = std::fs::File::create(&temporary)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Appends `entry` to the audit trail, synced.
    pub fn audit(&self, entry: &AuditEntry) -> Result<()> {
        let path = self.dir.join("audit.jsonl");
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot append to {}", path.display()))
    }

    /// Every entry of the audit trail, oldest first.
    pub fn audit_trail(&self) -> Result<Vec<AuditEntry>> {
        let path = self.dir.join("audit.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).with_context(|| format!("{} is damaged", path.display()))
            })
            .collect()
    }

    /// Where a rule's checkpoints go.
    pub fn state_of(&self, rule: &str) -> PathBuf {
        self.dir.join("rules").join(rule)
    }
}

/// Now, as RFC 3339 in UTC.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_catalog_opens_as_it_was_and_the_audit_trail_grows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut catalog = Catalog::open(dir.path()).expect("opened");
        assert!(catalog.rules.is_empty());
        catalog.rules.insert(
            "overheat".into(),
            Rule {
                name: "overheat".into(),
                paused: true,
                versions: vec![Version {
                    version: 1,
                    sql: "INSERT INTO alerts SELECT * FROM readings;".into(),
                    created: now(),
                    fingerprint: "f".into(),
                }],
            },
        );
        catalog.save().expect("saved");
        for action in ["create", "pause"] {
            catalog
                .audit(&AuditEntry {
                    time: now(),
                    who: "ops".into(),
                    action: action.into(),
                    rule: "overheat".into(),
                    old_version: None,
                    new_version: Some(1),
                })
                .expect("audited");
        }
        let again = Catalog::open(dir.path()).expect("opened again");
        let rule = &again.rules["overheat"];
        assert!(rule.paused);
        assert_eq!(rule.current().version, 1);
        let trail = again.audit_trail().expect("trail");
        assert_eq!(
            trail.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["create", "pause"]
        );
        assert!(!dir.path().join("rules.json.new").exists());
    }
}
