//! Which completed checkpoint covers how much of a source's input: a source that acknowledges
//! (or removes) input only once a checkpoint covers it notes, after each batch it hands on, the
//! first checkpoint that covers it, and learns when checkpoints complete.

use std::collections::VecDeque;

use eddy_engine::SourceContext;
use tokio::sync::watch;

/// Positions in a source's input (an ingest log's offset, a stream sequence, the newest message
/// to acknowledge), each with the first checkpoint that covers it.
pub struct Covered<P> {
    /// (the first checkpoint that covers it, position), oldest first.
    covered: VecDeque<(u64, P)>,
    completed: Option<watch::Receiver<u64>>,
}

impl<P> Covered<P> {
    /// For the source running in `ctx`; without checkpoints, no checkpoint ever completes.
    pub fn new(ctx: &SourceContext) -> Self {
        Self {
            covered: VecDeque::new(),
            completed: ctx.completed_checkpoints(),
        }
    }

    /// `true` when the engine takes checkpoints.
    pub fn checkpointed(&self) -> bool {
        self.completed.is_some()
    }

    /// Input up to `position` has been handed on, after the barrier of checkpoint
    /// `covered_by - 1`: checkpoint `covered_by` is the first that covers it (the caller reads
    /// [`SourceContext::last_barrier`] after handing the rows on, which can only name a later
    /// checkpoint than the first, never an earlier one).
    pub fn handed_on(&mut self, covered_by: u64, position: P) {
        match self.covered.back_mut() {
            Some((id, at)) if *id == covered_by => *at = position,
            _ => self.covered.push_back((covered_by, position)),
        }
    }

    /// The id of the next completed checkpoint; never, without checkpoints.
    pub async fn next_completed(&mut self) -> u64 {
        match &mut self.completed {
            Some(c) => match c.changed().await {
                Ok(()) => *c.borrow_and_update(),
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// Checkpoint `done` has completed: the newest position it covers, if it covers one not
    /// returned before.
    pub fn completed(&mut self, done: u64) -> Option<P> {
        let mut upto = None;
        while self.covered.front().is_some_and(|(id, _)| *id <= done) {
            upto = self.covered.pop_front().map(|(_, at)| at);
        }
        upto
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered() -> Covered<u64> {
        Covered {
            covered: VecDeque::new(),
            completed: None,
        }
    }

    #[test]
    fn a_checkpoint_covers_what_was_handed_on_before_its_barrier() {
        let mut c = covered();
        c.handed_on(1, 10);
        c.handed_on(1, 20);
        c.handed_on(2, 30);
        c.handed_on(3, 40);
        assert_eq!(c.completed(0), None);
        assert_eq!(c.completed(1), Some(20));
        assert_eq!(c.completed(1), None);
        // A later checkpoint covers everything before it too.
        assert_eq!(c.completed(3), Some(40));
        assert_eq!(c.completed(4), None);
    }
}
