//! The rules a service runs: each rule's SQL is planned after the service's catalog file (the
//! sources, sinks and tables every rule may use) and runs as an engine of its own, with its own
//! checkpoints under the state directory, so that rules stop, fail and resume independently.
//! Changes go through [`Rules`]: a rule is planned before anything stops, the catalog on disk is
//! written before a change is answered, and each change is audited.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context;
use eddy_connectors::shared::SharedSources;
use eddy_engine::connector::ConnectorRegistry;
use eddy_engine::metrics::EngineMetrics;
use eddy_engine::{EngineStatus, Plan, Planner, SqlError};
use serde::Serialize;
use tokio::sync::{Mutex, broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::catalog::{AuditEntry, Catalog, Rule, Version, now};

/// Why a change was refused.
#[derive(Debug)]
pub enum Refused {
    /// The SQL does not plan: each problem at its line and column of the rule's SQL.
    Sql(Vec<SqlError>),
    NameTaken(String),
    NoSuchRule(String),
    BadName(String),
    /// Writing the catalog or the state failed.
    Internal(anyhow::Error),
}

/// A rule as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RuleView {
    pub name: String,
    pub version: u32,
    /// `running`, `paused`, `failed` or `stopped` (its sources ended).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub counters: Counters,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// After a replacement: whether the rule went on from its state or started afresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_kept: Option<bool>,
}

/// What a rule's engine has counted since it last started.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Counters {
    pub events_in: u64,
    pub rows_out: u64,
    pub late: u64,
    pub dead_letters: u64,
    pub state_bytes: u64,
    /// When its sinks last wrote a row, RFC 3339 (none since it started: absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_alert: Option<String>,
}

/// A rule's engine while it runs.
struct Running {
    stop: CancellationToken,
    status: watch::Receiver<EngineStatus>,
    metrics: Arc<EngineMetrics>,
    /// When its sinks last wrote rows, in milliseconds since the epoch (0: not yet).
    last_alert: Arc<AtomicI64>,
    /// Ends when the engine has stopped (its last checkpoint taken).
    done: JoinHandle<()>,
}

impl Running {
    /// Stops the engine gracefully and waits until it has.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.done.await;
    }
}

/// Where `${VAR}` is looked up.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What rules' own statements may reach: the variables and directories `restriction` allows,
/// their `${VAR}` looked up in `env`.
#[derive(Clone)]
pub struct Access {
    pub restriction: eddy_engine::options::Restriction,
    pub env: Env,
}

impl Access {
    /// The process environment, as far as `restriction` allows.
    pub fn process(restriction: eddy_engine::options::Restriction) -> Self {
        Self {
            restriction,
            env: Arc::new(|name: &str| std::env::var(name).ok()),
        }
    }
}

/// An alert as the live stream shows it: a row a rule's sink has written.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Alert {
    pub rule: String,
    pub sink: String,
    /// The row, as the JSON object a sink writes.
    pub row: serde_json::Value,
}

/// Alerts the live stream may fall behind by before a slow client skips some.
const ALERTS_CHANNEL: usize = 4096;

pub struct Rules {
    /// Every rule's alerts, for the live stream: a client that falls behind skips, it never
    /// slows a rule.
    pub alerts: broadcast::Sender<Alert>,
    /// The catalog file's SQL, planned before each rule's.
    catalog_sql: String,
    catalog_name: String,
    registry: Arc<ConnectorRegistry>,
    /// The connections of the MQTT sources the rules read, one per source however many rules
    /// read it.
    shared: Arc<SharedSources>,
    /// What a rule's own statements may reach, and where their `${VAR}` are looked up.
    access: Access,
    checkpoint_interval: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    catalog: Catalog,
    running: HashMap<String, Running>,
    /// Why a rule that should run could not start (its SQL no longer plans against the catalog,
    /// its checkpoint cannot be read): shown as its error until it starts.
    not_started: HashMap<String, String>,
}

impl Rules {
    /// The rules kept in `state_dir`, each started unless it was paused.
    pub async fn start(
        state_dir: PathBuf,
        catalog: Option<(String, String)>,
        access: Access,
        checkpoint_interval: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        let (catalog_name, catalog_sql) = catalog.unwrap_or_default();
        let shared = SharedSources::new(state_dir.join("sources"));
        let rules = Arc::new(Self {
            alerts: broadcast::channel(ALERTS_CHANNEL).0,
            catalog_sql,
            catalog_name,
            registry: Arc::new(eddy_connectors::shared::registry(&shared)),
            shared,
            access,
            checkpoint_interval,
            inner: Mutex::new(Inner {
                catalog: Catalog::open(&state_dir)?,
                running: HashMap::new(),
                not_started: HashMap::new(),
            }),
        });
        if !rules.catalog_sql.trim().is_empty() {
            // The catalog alone must plan: its errors are the service's, at its own lines.
            Planner::new(&rules.catalog_name, &rules.registry)
                .with_env(&*rules.access.env)
                .definitions_only()
                .plan(&rules.catalog_sql)
                .await
                .map_err(|d| anyhow::anyhow!("{d}"))?;
        }
        let mut inner = rules.inner.lock().await;
        let names: Vec<Rule> = inner.catalog.rules.values().cloned().collect();
        for rule in names {
            if rule.paused {
                info!(rule = %rule.name, "paused");
                continue;
            }
            match rules.run(&inner.catalog, &rule).await {
                Ok(r) => {
                    inner.running.insert(rule.name.clone(), r);
                }
                Err(e) => {
                    warn!(rule = %rule.name, "cannot start: {e:#}");
                    inner
                        .not_started
                        .insert(rule.name.clone(), format!("{e:#}"));
                }
            }
        }
        drop(inner);
        Ok(rules)
    }

    /// Plans `sql` as rule `name`'s: after the catalog, its errors at the rule's own lines.
    async fn plan(&self, name: &str, sql: &str) -> Result<Plan, Refused> {
        let offset = if self.catalog_sql.trim().is_empty() {
            0
        } else {
            self.catalog_sql.lines().count() as u64
        };
        let script = if offset == 0 {
            sql.to_string()
        } else {
            format!("{}\n{sql}", self.catalog_sql.trim_end_matches('\n'))
        };
        plan_apart(
            Arc::clone(&self.registry),
            format!("rule {name}"),
            script,
            (self.access.clone(), offset + 1),
        )
        .await?
        .map_err(|d| {
            Refused::Sql(
                d.errors
                    .into_iter()
                    .map(|mut e| {
                        e.location.line = e.location.line.saturating_sub(offset);
                        e
                    })
                    .collect(),
            )
        })
    }

    /// Starts `rule`'s current version, resuming from its checkpoints.
    async fn run(&self, catalog: &Catalog, rule: &Rule) -> anyhow::Result<Running> {
        let plan = self
            .plan(&rule.name, &rule.current().sql)
            .await
            .map_err(|r| match r {
                Refused::Sql(errors) => anyhow::anyhow!(
                    "{}",
                    errors
                        .iter()
                        .map(|e| format!(
                            "{}:{}: {}",
                            e.location.line, e.location.column, e.message
                        ))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                other => anyhow::anyhow!("{other:?}"),
            })?;
        let stop = CancellationToken::new();
        let checkpoints = eddy_engine::runtime::CheckpointConfig {
            dir: catalog.state_of(&rule.name),
            interval: self.checkpoint_interval,
        };
        let engine = eddy_engine::start(plan, &stop, Some(checkpoints))
            .with_context(|| format!("cannot start rule {}", rule.name))?;
        let status = engine.status();
        let metrics = engine.metrics();
        let last_alert = Arc::new(AtomicI64::new(0));
        tokio::spawn(forward_alerts(
            rule.name.clone(),
            engine.written(),
            self.alerts.clone(),
            Arc::clone(&last_alert),
        ));
        let name = rule.name.clone();
        let done = tokio::spawn(async move {
            match engine.wait().await {
                Ok(()) => info!(rule = %name, "stopped"),
                Err(e) => warn!(rule = %name, "failed: {e}"),
            }
        });
        info!(rule = %rule.name, version = rule.current().version, "running");
        Ok(Running {
            stop,
            status,
            metrics,
            last_alert,
            done,
        })
    }

    /// Registers and starts a new rule.
    pub async fn create(&self, name: &str, sql: &str, who: &str) -> Result<RuleView, Refused> {
        check_name(name)?;
        let mut inner = self.inner.lock().await;
        if inner.catalog.rules.contains_key(name) {
            return Err(Refused::NameTaken(name.to_string()));
        }
        let plan = self.plan(name, sql).await?;
        let rule = Rule {
            name: name.to_string(),
            paused: false,
            versions: vec![Version {
                version: 1,
                sql: sql.to_string(),
                created: now(),
                fingerprint: plan.fingerprint(),
            }],
        };
        // A rule's state directory left by a rule of the same name deleted before is not its.
        let state = inner.catalog.state_of(name);
        if state.exists() {
            std::fs::remove_dir_all(&state)
                .with_context(|| format!("cannot remove {}", state.display()))
                .map_err(Refused::Internal)?;
        }
        let running = self
            .run(&inner.catalog, &rule)
            .await
            .map_err(Refused::Internal)?;
        inner.catalog.rules.insert(name.to_string(), rule);
        self.commit(&inner.catalog, who, "create", name, None, Some(1))?;
        inner.running.insert(name.to_string(), running);
        inner.not_started.remove(name);
        Ok(view(&inner, name, false).expect("just inserted"))
    }

    /// A new version of `name`: planned first (a bad one leaves the old running), then the old
    /// stops cleanly and the new starts, from the old's state when their plans match.
    pub async fn replace(&self, name: &str, sql: &str, who: &str) -> Result<RuleView, Refused> {
        let mut inner = self.inner.lock().await;
        let Some(old) = inner.catalog.rules.get(name).cloned() else {
            return Err(Refused::NoSuchRule(name.to_string()));
        };
        let plan = self.plan(name, sql).await?;
        let fingerprint = plan.fingerprint();
        drop(plan);
        if let Some(running) = inner.running.remove(name) {
            running.stop().await;
        }
        let mut kept = fingerprint == old.current().fingerprint;
        let state = inner.catalog.state_of(name);
        let old_version = old.current().version;
        if !kept {
            set_aside(&state, old_version).map_err(Refused::Internal)?;
        }
        let mut rule = old.clone();
        let version = old.current().version + 1;
        rule.versions.push(Version {
            version,
            sql: sql.to_string(),
            created: now(),
            fingerprint,
        });
        if !rule.paused {
            let running = match self.run(&inner.catalog, &rule).await {
                Ok(running) => running,
                Err(e) if kept => {
                    // Each operator checks the state it reads: state of the same shape that
                    // does not fit (a column's type changed under an aggregate) is not used.
                    warn!(rule = %name, "version {version} cannot go on from the state of version {old_version}, so it starts afresh: {e:#}");
                    kept = false;
                    set_aside(&state, old_version).map_err(Refused::Internal)?;
                    self.run(&inner.catalog, &rule)
                        .await
                        .map_err(Refused::Internal)?
                }
                Err(e) => return Err(Refused::Internal(e)),
            };
            inner.running.insert(name.to_string(), running);
            inner.not_started.remove(name);
        }
        inner.catalog.rules.insert(name.to_string(), rule);
        self.commit(
            &inner.catalog,
            who,
            "replace",
            name,
            Some(version - 1),
            Some(version),
        )?;
        let mut shown = view(&inner, name, false).expect("present");
        shown.state_kept = Some(kept);
        Ok(shown)
    }

    /// Stops `name` after a last checkpoint; it stays stopped across restarts until resumed.
    pub async fn pause(&self, name: &str, who: &str) -> Result<RuleView, Refused> {
        let mut inner = self.inner.lock().await;
        let Some(rule) = inner.catalog.rules.get_mut(name) else {
            return Err(Refused::NoSuchRule(name.to_string()));
        };
        rule.paused = true;
        let version = rule.current().version;
        if let Some(running) = inner.running.remove(name) {
            running.stop().await;
        }
        self.commit(
            &inner.catalog,
            who,
            "pause",
            name,
            Some(version),
            Some(version),
        )?;
        Ok(view(&inner, name, false).expect("present"))
    }

    /// Starts `name` again from its last checkpoint (a failed rule too).
    pub async fn resume(&self, name: &str, who: &str) -> Result<RuleView, Refused> {
        let mut inner = self.inner.lock().await;
        let Some(rule) = inner.catalog.rules.get_mut(name) else {
            return Err(Refused::NoSuchRule(name.to_string()));
        };
        rule.paused = false;
        let rule = rule.clone();
        if let Some(running) = inner.running.remove(name) {
            running.stop().await;
        }
        let running = self
            .run(&inner.catalog, &rule)
            .await
            .map_err(Refused::Internal)?;
        inner.running.insert(name.to_string(), running);
        inner.not_started.remove(name);
        let version = rule.current().version;
        self.commit(
            &inner.catalog,
            who,
            "resume",
            name,
            Some(version),
            Some(version),
        )?;
        Ok(view(&inner, name, false).expect("present"))
    }

    /// Stops `name` and forgets it (and its state).
    pub async fn delete(&self, name: &str, who: &str) -> Result<(), Refused> {
        let mut inner = self.inner.lock().await;
        let Some(rule) = inner.catalog.rules.remove(name) else {
            return Err(Refused::NoSuchRule(name.to_string()));
        };
        inner.not_started.remove(name);
        if let Some(running) = inner.running.remove(name) {
            running.stop().await;
        }
        let state = inner.catalog.state_of(name);
        if state.exists() {
            let _ = std::fs::remove_dir_all(&state);
        }
        // The shared sources hold the log for it no longer.
        self.shared.release(&state).await;
        let version = rule.current().version;
        self.commit(&inner.catalog, who, "delete", name, Some(version), None)
    }

    pub async fn list(&self) -> Vec<RuleView> {
        let inner = self.inner.lock().await;
        inner
            .catalog
            .rules
            .keys()
            .filter_map(|n| view(&inner, n, false))
            .collect()
    }

    /// One rule with its SQL and its plan.
    pub async fn get(&self, name: &str) -> Result<RuleView, Refused> {
        let inner = self.inner.lock().await;
        let mut shown =
            view(&inner, name, true).ok_or_else(|| Refused::NoSuchRule(name.to_string()))?;
        let sql = shown.sql.clone().unwrap_or_default();
        drop(inner);
        shown.plan = self.plan(name, &sql).await.ok().map(|p| p.to_string());
        Ok(shown)
    }

    /// Every rule's state and, while it runs, its engine's counters.
    pub async fn metrics(&self) -> Vec<super::metrics::RuleMetrics> {
        let inner = self.inner.lock().await;
        inner
            .catalog
            .rules
            .keys()
            .filter_map(|name| {
                let shown = view(&inner, name, false)?;
                Some(super::metrics::RuleMetrics {
                    name: name.clone(),
                    state: shown.state,
                    engine: inner.running.get(name).map(|r| Arc::clone(&r.metrics)),
                })
            })
            .collect()
    }

    pub async fn versions(&self, name: &str) -> Result<Vec<Version>, Refused> {
        let inner = self.inner.lock().await;
        inner
            .catalog
            .rules
            .get(name)
            .map(|r| r.versions.clone())
            .ok_or_else(|| Refused::NoSuchRule(name.to_string()))
    }

    pub async fn audit_trail(&self) -> Result<Vec<AuditEntry>, Refused> {
        let inner = self.inner.lock().await;
        inner.catalog.audit_trail().map_err(Refused::Internal)
    }

    /// Every rule running (`false` when one has failed or stopped).
    pub async fn ready(&self) -> bool {
        let inner = self.inner.lock().await;
        inner.catalog.rules.values().all(|r| {
            r.paused
                || inner
                    .running
                    .get(&r.name)
                    .is_some_and(|run| matches!(*run.status.borrow(), EngineStatus::Running))
        })
    }

    /// Stops every rule (each takes a last checkpoint), then closes the shared connections.
    pub async fn stop_all(&self) {
        let mut inner = self.inner.lock().await;
        let running: Vec<Running> = inner.running.drain().map(|(_, r)| r).collect();
        for r in running {
            r.stop().await;
        }
        self.shared.stop().await;
    }

    /// How many shared source connections are open.
    pub async fn shared_connections(&self) -> usize {
        self.shared.connections().await
    }

    /// Writes the catalog and audits the change.
    fn commit(
        &self,
        catalog: &Catalog,
        who: &str,
        action: &str,
        rule: &str,
        old_version: Option<u32>,
        new_version: Option<u32>,
    ) -> Result<(), Refused> {
        catalog.save().map_err(Refused::Internal)?;
        catalog
            .audit(&AuditEntry {
                time: now(),
                who: who.to_string(),
                action: action.to_string(),
                rule: rule.to_string(),
                old_version,
                new_version,
            })
            .map_err(Refused::Internal)
    }
}

/// Plans `script` on a thread of its own: planning (DataFusion's) is not `Send`, and the API's
/// handlers must be.
async fn plan_apart(
    registry: Arc<ConnectorRegistry>,
    file: String,
    script: String,
    (access, from_line): (Access, u64),
) -> Result<Result<Plan, eddy_engine::Diagnostics>, Refused> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let planner = Planner::new(&file, &registry)
            .with_env(&*access.env)
            .restrict(access.restriction, from_line);
        runtime.block_on(planner.plan(&script))
    })
    .await
    .map_err(|e| Refused::Internal(anyhow::anyhow!("planning failed: {e}")))
}

/// Hands each row a rule's sinks write to the live stream, while anyone listens; ends with the
/// rule's engine.
async fn forward_alerts(
    rule: String,
    mut written: broadcast::Receiver<eddy_engine::Written>,
    alerts: broadcast::Sender<Alert>,
    last_alert: Arc<AtomicI64>,
) {
    use eddy_connectors::format::{Format, RecordEncoder};
    let Ok(encoder) = RecordEncoder::new(Format::Json, None) else {
        return;
    };
    loop {
        let w = match written.recv().await {
            Ok(w) => w,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if w.batch.num_rows() > 0 {
            last_alert.store(eddy_engine::time::now_millis(), Relaxed);
        }
        if alerts.receiver_count() == 0 {
            continue;
        }
        let Ok(rows) = encoder.each(&w.batch) else {
            continue;
        };
        for row in rows {
            let row = serde_json::from_slice(&row).unwrap_or(serde_json::Value::Null);
            let _ = alerts.send(Alert {
                rule: rule.clone(),
                sink: w.sink.clone(),
                row,
            });
        }
    }
}

/// Moves a rule's state directory `state` aside, to `NAME.vVERSION` beside it, so that the rule
/// starts afresh and the state of version `version` can still be looked at.
fn set_aside(state: &std::path::Path, version: u32) -> anyhow::Result<()> {
    if !state.exists() {
        return Ok(());
    }
    let name = state
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let aside = state.with_file_name(format!("{name}.v{version}"));
    let _ = std::fs::remove_dir_all(&aside);
    std::fs::rename(state, &aside).with_context(|| format!("cannot move {} aside", state.display()))
}

/// Rule names go into paths and URLs: letters, digits, `-` and `_`, at most 64.
fn check_name(name: &str) -> Result<(), Refused> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Refused::BadName(format!(
            "'{name}' is not a rule name: use 1 to 64 letters, digits, '-' or '_'"
        )))
    }
}

fn view(inner: &Inner, name: &str, with_sql: bool) -> Option<RuleView> {
    let rule = inner.catalog.rules.get(name)?;
    let running = inner.running.get(name);
    let (state, error) = match (rule.paused, running.map(|r| r.status.borrow().clone())) {
        (true, _) => ("paused", None),
        (false, Some(EngineStatus::Failed(e))) => ("failed", Some(e)),
        (false, Some(EngineStatus::Stopped)) => ("stopped", None),
        (false, Some(_)) => ("running", None),
        (false, None) => (
            "failed",
            Some(
                inner
                    .not_started
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| "not started".to_string()),
            ),
        ),
    };
    let counters = running.map(counters).unwrap_or_default();
    Some(RuleView {
        name: rule.name.clone(),
        version: rule.current().version,
        state: state.to_string(),
        error,
        counters,
        sql: with_sql.then(|| rule.current().sql.clone()),
        plan: None,
        state_kept: None,
    })
}

fn counters(running: &Running) -> Counters {
    let metrics = &running.metrics;
    let mut c = Counters {
        last_alert: match running.last_alert.load(Relaxed) {
            0 => None,
            at => chrono::DateTime::from_timestamp_millis(at)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        },
        ..Counters::default()
    };
    for s in &metrics.sources {
        c.events_in += s.events.load(Relaxed);
        c.late += s.late.load(Relaxed);
        c.dead_letters += s.dead_letters.load(Relaxed);
    }
    for s in &metrics.sinks {
        c.rows_out += s.rows.load(Relaxed);
    }
    for q in &metrics.queries {
        c.state_bytes += q.peak_state_bytes.load(Relaxed);
    }
    c
}
