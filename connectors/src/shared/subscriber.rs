//! A rule's side of a shared source: the [`Source`] its plan runs. It takes the hub's decoded
//! batches from its offset on, reads the log itself where the hub has none for it, and tells the
//! hub what its completed checkpoints cover.

use std::sync::Arc;

use async_trait::async_trait;
use eddy_engine::{ConnectorError, Source, SourceContext};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::SharedSources;
use super::feed::Shareable;
use super::hub::{Hub, Next};
use crate::checkpoints::Covered;
use crate::ingest_log::LogReader;
use crate::ingest_log::read_back::log_error;
use crate::messages::Message;

/// Where a rule is in a shared source's log: what its checkpoint records.
#[derive(Debug, Serialize, Deserialize)]
struct SharedPosition {
    /// Which log: the source's key (its name and a hash of its definition).
    log: String,
    /// The offset in that log of the first message not yet handed on.
    shared_log: u64,
}

pub struct SharedSubscriber {
    pub(super) key: String,
    /// Who the broker knows the source's reader as, when two connections reading it would split
    /// its messages (an AMQP queue's consumers): one hub at a time may read it.
    pub(super) consumer: Option<String>,
    /// What starts the hub, if this rule is the first to read the source.
    pub(super) for_hub: Option<Box<dyn Shareable>>,
    /// How this rule decodes what it reads from the log itself.
    pub(super) own: Box<dyn Shareable>,
    pub(super) shared: Arc<SharedSources>,
}

/// Leaves the hub however the rule's source ends.
struct Joined {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for Joined {
    fn drop(&mut self) {
        self.hub.leave(self.id);
    }
}

fn position(log: &str, offset: u64) -> Result<serde_json::Value, ConnectorError> {
    serde_json::to_value(SharedPosition {
        log: log.to_string(),
        shared_log: offset,
    })
    .map_err(|e| ConnectorError::fatal(e.to_string()))
}

#[async_trait]
impl Source for SharedSubscriber {
    fn describe(&self) -> String {
        format!(
            "{}, one connection shared by every rule that reads it",
            self.own.describe()
        )
    }

    async fn run(mut self: Box<Self>, ctx: &mut SourceContext) -> Result<(), ConnectorError> {
        let at = match ctx.resume_from() {
            Some(p) => {
                let at = serde_json::from_value::<SharedPosition>(p.clone()).map_err(|_| {
                    ConnectorError::fatal(format!(
                        "the checkpoint's position {p} is not a position in a shared source's log"
                    ))
                })?;
                if at.log == self.key {
                    Some(at.shared_log)
                } else {
                    // The source's definition changed (another broker, topic or format): its
                    // messages come through another log, begun when the new definition first
                    // ran, read from its beginning.
                    warn!(source = %ctx.name(), "the source's definition changed since the checkpoint: reading what its new connection has received");
                    Some(0)
                }
            }
            None => None,
        };
        let for_hub = self
            .for_hub
            .take()
            .ok_or_else(|| ConnectorError::fatal("the source has run already"))?;
        let hub = self
            .shared
            .hub(&self.key, self.consumer.as_deref(), ctx.name(), for_hub, at)
            .await?;
        // The rule's state directory names it: its position is held there when it stops.
        let holder = ctx.durable_dir().map(|d| d.display().to_string());
        let (id, at, skipped) = hub.join(at, holder);
        if skipped > 0 {
            warn!(
                source = %ctx.name(),
                "the shared log before this rule's checkpoint has been removed (it was stopped while other rules went on): {skipped} bytes of messages skipped"
            );
        }
        let joined = Joined { hub, id };
        // The rule is at `at` from now on, whether or not anything arrives before its next
        // checkpoint: a rule stopped before then goes on from here, missing nothing.
        ctx.flush_from(position(&self.key, at)?).await?;
        self.read(&joined, at, ctx).await
    }
}

impl SharedSubscriber {
    /// Hands on what the hub has from `at` on until the engine shuts down; every `linger` the
    /// source flushes (so that a checkpoint barrier passes when nothing arrives).
    async fn read(
        &mut self,
        joined: &Joined,
        mut at: u64,
        ctx: &mut SourceContext,
    ) -> Result<(), ConnectorError> {
        let hub = &joined.hub;
        let mut covered = Covered::new(ctx);
        let mut published = hub.published();
        let mut reader: Option<LogReader> = None;
        let mut flush = tokio::time::interval(self.own.linger());
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = ctx.shutdown().clone();
        loop {
            published.borrow_and_update();
            while !shutdown.is_cancelled() {
                match hub.next(at) {
                    Next::Take(decoded) => {
                        for r in &decoded.rejected {
                            ctx.dead_letter(&r.origin, &r.payload, &r.reason);
                        }
                        let p = position(&self.key, decoded.end)?;
                        match &decoded.batch {
                            Some(b) => ctx.send_from(b.clone(), Some(p)).await?,
                            None => ctx.flush_from(p).await?,
                        }
                        at = decoded.end;
                    }
                    Next::Read(upto) => {
                        let r = match &mut reader {
                            Some(r) if r.position() == at => r,
                            _ => {
                                reader.insert(LogReader::open(&hub.log_dir, at).map_err(log_error)?)
                            }
                        };
                        let records = r.read(upto, self.own.batch_size()).map_err(log_error)?;
                        let messages: Vec<Message> = records.iter().map(Message::from).collect();
                        self.own
                            .rows()
                            .hand_on(&messages, Some(position(&self.key, records.end)?), ctx)
                            .await?;
                        at = records.end;
                    }
                    Next::Wait => break,
                    Next::Failed(reason) => {
                        return Err(ConnectorError::fatal(format!(
                            "the connection shared by the rules that read {} failed: {reason}",
                            ctx.name()
                        )));
                    }
                }
                covered.handed_on(ctx.last_barrier().await + 1, at);
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                done = covered.next_completed() => {
                    if let Some(offset) = covered.completed(done) {
                        hub.covered(joined.id, offset);
                    }
                }
                _ = published.changed() => {}
                _ = flush.tick() => {
                    ctx.metrics().reconnects.store(
                        hub.reconnects.load(std::sync::atomic::Ordering::Relaxed),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    ctx.flush().await?;
                }
            }
        }
    }
}
