//! The matcher of one partition: a Pike VM over the compiled pattern. Threads (partial matches)
//! are kept in preference order; each row advances all of them at once. When a thread reaches the
//! end of the pattern, the less preferred threads of the same start row are dropped and its match
//! is recorded; the match is final once no more preferred thread of that start is alive. Matches
//! are reported in the order of their first rows, and `AFTER MATCH SKIP` decides where the next one
//! may start.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::{Inst, Program};
use crate::time::Millis;

/// Folds a mapped row into a thread's signature.
fn mix(signature: u64, row: u64, var: usize) -> u64 {
    // +1 so that row 0 of variable 0 changes the signature too.
    let mut h = signature
        ^ (row + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (var as u64 + 1).rotate_left(29);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Where the next match may start after one is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipTo {
    PastLastRow,
    NextRow,
    /// The first row mapped to the variable.
    FirstOf(usize),
    /// The last row mapped to the variable.
    LastOf(usize),
}

#[derive(Debug, Clone, Copy)]
pub struct MatcherLimits {
    /// Partial matches alive at once in one partition; beyond it the oldest are dropped.
    pub max_threads: usize,
    /// A match spans at most this much event time (`WITHIN`).
    pub within: Option<Millis>,
}

/// A match: the row (by its sequence number in the partition) where it starts, and the rows it
/// maps, each with its variable. An empty match maps no row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Match {
    pub start: u64,
    pub rows: Vec<(u64, usize)>,
    /// The rows taken inside an exclusion `{- ... -}`, in order.
    #[serde(default)]
    pub excluded: Vec<u64>,
}

impl Match {
    /// A match from the last step of its path.
    fn from_path(start: u64, path: Option<&Arc<Step>>) -> Self {
        let mut rows = Vec::new();
        let mut excluded = Vec::new();
        for s in Step::iter(path) {
            rows.push((s.row, s.var));
            if s.excluded {
                excluded.push(s.row);
            }
        }
        rows.reverse();
        excluded.reverse();
        Self {
            start,
            rows,
            excluded,
        }
    }
}

/// One row of a partial match, with its variable; `prev` is the row mapped before it.
pub struct Step {
    pub row: u64,
    pub var: usize,
    /// Taken inside an exclusion `{- ... -}`.
    pub excluded: bool,
    pub prev: Option<Arc<Step>>,
}

impl Step {
    /// The rows of a path, most recent first.
    pub fn iter(path: Option<&Arc<Step>>) -> impl Iterator<Item = &Step> {
        std::iter::successors(path.map(Arc::as_ref), |s| s.prev.as_deref())
    }
}

/// A thread as a checkpoint stores it: pc, start row, start time, signature, and the rows it
/// mapped (oldest first, each with its variable).
type ThreadState = (usize, u64, Millis, u64, Vec<(u64, usize)>);

/// A matcher's partial matches and counters as a checkpoint stores them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MatcherState {
    threads: Vec<ThreadState>,
    recorded: Vec<(u64, Vec<(u64, usize)>)>,
    next_row: u64,
    next_start: u64,
    dropped: u64,
    /// Per thread, then per recorded match: the rows taken inside an exclusion.
    #[serde(default)]
    excluded: (Vec<Vec<u64>>, Vec<Vec<u64>>),
}

/// Whether the row being matched satisfies the conditions of variables.
pub trait Conditions {
    /// For each candidate (a variable, and the rows its partial match has mapped so far), whether
    /// the current row satisfies the variable's condition.
    fn eval(&mut self, candidates: &[(usize, Option<&Arc<Step>>)]) -> Vec<bool>;
}

/// Conditions that read only the current row (and `PREV`): one answer per variable.
impl<F: Fn(usize) -> bool> Conditions for F {
    fn eval(&mut self, candidates: &[(usize, Option<&Arc<Step>>)]) -> Vec<bool> {
        candidates.iter().map(|(v, _)| self(*v)).collect()
    }
}

#[derive(Clone)]
struct Thread {
    pc: usize,
    start: u64,
    start_time: Millis,
    path: Option<Arc<Step>>,
    /// What of the path the conditions read (the rows of the variables they name): two threads
    /// at the same place with the same signature have the same future.
    signature: u64,
}

pub struct Matcher {
    program: Arc<Program>,
    /// Variables whose rows some condition reads (`A.temp`, `AVG(B.temp)`).
    read: Vec<bool>,
    skip: SkipTo,
    limits: MatcherLimits,
    /// Threads waiting at a `Row` instruction, most preferred first.
    threads: Vec<Thread>,
    /// The best match found so far for each start row still undecided.
    recorded: BTreeMap<u64, Match>,
    next_row: u64,
    next_start: u64,
    /// Partial matches dropped because of `limits.max_threads`.
    pub dropped: u64,
    /// The start of a match that `AFTER MATCH SKIP TO` could not skip from (its variable maps no
    /// row of the match, or only its first row): the standard makes it an error.
    pub failed: Option<u64>,
}

impl Matcher {
    pub fn new(program: Arc<Program>, skip: SkipTo, limits: MatcherLimits) -> Self {
        Self::reading(program, skip, limits, Vec::new())
    }

    /// A matcher whose conditions read the rows already mapped to the variables marked in `read`.
    pub fn reading(
        program: Arc<Program>,
        skip: SkipTo,
        limits: MatcherLimits,
        read: Vec<bool>,
    ) -> Self {
        Self {
            program,
            read,
            skip,
            limits,
            threads: Vec::new(),
            recorded: BTreeMap::new(),
            next_row: 0,
            next_start: 0,
            dropped: 0,
            failed: None,
        }
    }

    /// The partial matches and counters, for a checkpoint.
    pub fn state(&self) -> MatcherState {
        let threads = self
            .threads
            .iter()
            .map(|t| {
                let mut path: Vec<(u64, usize)> = Step::iter(t.path.as_ref())
                    .map(|s| (s.row, s.var))
                    .collect();
                path.reverse();
                (t.pc, t.start, t.start_time, t.signature, path)
            })
            .collect();
        MatcherState {
            threads,
            recorded: self
                .recorded
                .iter()
                .map(|(&start, m)| (start, m.rows.clone()))
                .collect(),
            next_row: self.next_row,
            next_start: self.next_start,
            dropped: self.dropped,
            excluded: (
                self.threads
                    .iter()
                    .map(|t| {
                        let mut rows: Vec<u64> = Step::iter(t.path.as_ref())
                            .filter(|s| s.excluded)
                            .map(|s| s.row)
                            .collect();
                        rows.reverse();
                        rows
                    })
                    .collect(),
                self.recorded.values().map(|m| m.excluded.clone()).collect(),
            ),
        }
    }

    /// Memory of the partial matches (their paths share steps: each is counted once) and of the
    /// undecided matches.
    pub fn bytes(&self) -> usize {
        let mut steps = std::collections::HashSet::new();
        for t in &self.threads {
            let mut at = t.path.as_ref();
            while let Some(step) = at {
                if !steps.insert(Arc::as_ptr(step)) {
                    break;
                }
                at = step.prev.as_ref();
            }
        }
        let recorded: usize = self
            .recorded
            .values()
            .map(|m| size_of::<(u64, Match)>() + m.rows.capacity() * size_of::<(u64, usize)>())
            .sum();
        self.threads.capacity() * size_of::<Thread>()
            + steps.len() * (size_of::<Step>() + 2 * size_of::<usize>())
            + recorded
    }

    /// Takes back what [`Self::state`] gave, into a matcher of the same pattern; a state that
    /// does not fit the pattern (a thread anywhere but at a row instruction, a variable the
    /// pattern does not have) is refused.
    pub fn restore(&mut self, state: MatcherState) -> Result<(), String> {
        let vars = self.read.len();
        for (pc, _, _, _, path) in &state.threads {
            if !matches!(self.program.insts.get(*pc), Some(Inst::Row(_))) {
                return Err(format!(
                    "a partial match waits at instruction {pc}, which reads no row"
                ));
            }
            if let Some((_, v)) = path.iter().find(|(_, v)| *v >= vars) {
                return Err(format!(
                    "a partial match maps a row to variable {v} of {vars}"
                ));
            }
        }
        if let Some((_, v)) = state
            .recorded
            .iter()
            .flat_map(|(_, rows)| rows)
            .find(|(_, v)| *v >= vars)
        {
            return Err(format!(
                "a found match maps a row to variable {v} of {vars}"
            ));
        }
        let (mut thread_excluded, mut recorded_excluded) = state.excluded;
        thread_excluded.resize(state.threads.len(), Vec::new());
        recorded_excluded.resize(state.recorded.len(), Vec::new());
        self.threads = state
            .threads
            .into_iter()
            .zip(thread_excluded)
            .map(
                |((pc, start, start_time, signature, path), excluded)| Thread {
                    pc,
                    start,
                    start_time,
                    signature,
                    path: path.into_iter().fold(None, |prev, (row, var)| {
                        Some(Arc::new(Step {
                            row,
                            var,
                            excluded: excluded.contains(&row),
                            prev,
                        }))
                    }),
                },
            )
            .collect();
        self.recorded = state
            .recorded
            .into_iter()
            .zip(recorded_excluded)
            .map(|((start, rows), excluded)| {
                (
                    start,
                    Match {
                        start,
                        rows,
                        excluded,
                    },
                )
            })
            .collect();
        self.next_row = state.next_row;
        self.next_start = state.next_start;
        self.dropped = state.dropped;
        Ok(())
    }

    /// The sequence number the next row gets.
    pub fn next_row(&self) -> u64 {
        self.next_row
    }

    /// The oldest row a live thread or an undecided match may still need; rows before it can go.
    pub fn oldest_needed(&self) -> u64 {
        let threads = self.threads.iter().map(|t| t.start).min();
        let recorded = self.recorded.keys().next().copied();
        threads
            .into_iter()
            .chain(recorded)
            .min()
            .unwrap_or(self.next_row)
    }

    /// Partial matches alive.
    pub fn partial_matches(&self) -> usize {
        self.threads.len() + self.recorded.len()
    }

    /// The matches found that wait for more preferred partial matches to fail.
    pub fn undecided(&self) -> impl Iterator<Item = &Match> {
        self.recorded.values()
    }

    /// A match has been found that waits for more preferred partial matches to fail.
    pub fn has_undecided_match(&self) -> bool {
        !self.recorded.is_empty()
    }

    pub fn is_idle(&self) -> bool {
        self.threads.is_empty() && self.recorded.is_empty()
    }

    /// Feeds the next row of the partition (in event-time order) at `time`; `conditions` says
    /// whether the row satisfies a variable's condition. Final matches land in `out`.
    pub fn push(&mut self, time: Millis, conditions: &mut dyn Conditions, out: &mut Vec<Match>) {
        let row = self.next_row;
        self.next_row += 1;
        let mut current = std::mem::take(&mut self.threads);
        // A new partial match may start at this row: the least preferred one. (An empty match
        // found here cuts only the seed's less preferred branches.)
        if row >= self.next_start {
            let mut seeded = Vec::new();
            self.closure(
                Thread {
                    pc: 0,
                    start: row,
                    start_time: time,
                    path: None,
                    signature: 0,
                },
                &mut seeded,
                &mut HashSet::new(),
                &mut HashSet::new(),
            );
            current.extend(seeded);
        }
        // The threads that may take this row, and whether it fits their variable.
        let current: Vec<Thread> = current
            .into_iter()
            .filter(|t| {
                self.limits
                    .within
                    .is_none_or(|within| time - t.start_time <= within)
                    && matches!(self.program.insts[t.pc], Inst::Row(_))
            })
            .collect();
        let candidates: Vec<(usize, Option<&Arc<Step>>)> = current
            .iter()
            .map(|t| match self.program.insts[t.pc] {
                Inst::Row(var) => (var, t.path.as_ref()),
                _ => (0, None),
            })
            .collect();
        let fits = conditions.eval(&candidates);
        drop(candidates);
        // Starts whose match was found at this row: their less preferred threads are dropped.
        let mut cut: HashSet<u64> = HashSet::new();
        let mut next = Vec::with_capacity(current.len());
        let mut visited = HashSet::new();
        for (t, fits) in current.into_iter().zip(fits) {
            if cut.contains(&t.start) || !fits {
                continue;
            }
            let Inst::Row(var) = self.program.insts[t.pc] else {
                continue;
            };
            let signature = if self.read.get(var).copied().unwrap_or(false) {
                mix(t.signature, row, var)
            } else {
                t.signature
            };
            let advanced = Thread {
                pc: t.pc + 1,
                start: t.start,
                start_time: t.start_time,
                path: Some(Arc::new(Step {
                    row,
                    var,
                    excluded: self.program.excluded.get(t.pc).copied().unwrap_or(false),
                    prev: t.path,
                })),
                signature,
            };
            self.closure(advanced, &mut next, &mut visited, &mut cut);
        }
        self.threads = next;
        self.enforce_limit();
        self.finalize(out);
    }

    /// Follows jumps and splits from `t`, in preference order, to the threads that wait for a row
    /// (appended to `out`) and to the end of the pattern (a match for the thread's start; less
    /// preferred threads of that start are not added any more).
    fn closure(
        &mut self,
        t: Thread,
        out: &mut Vec<Thread>,
        visited: &mut HashSet<(u64, usize, u64)>,
        cut: &mut HashSet<u64>,
    ) {
        let mut stack = vec![t];
        while let Some(t) = stack.pop() {
            if cut.contains(&t.start) || !visited.insert((t.start, t.pc, t.signature)) {
                continue;
            }
            match self.program.insts[t.pc] {
                Inst::Row(_) => out.push(t),
                Inst::Jump(to) => stack.push(Thread { pc: to, ..t }),
                Inst::Split(first, second) => {
                    // The stack pops the preferred branch first.
                    stack.push(Thread {
                        pc: second,
                        ..t.clone()
                    });
                    stack.push(Thread { pc: first, ..t });
                }
                Inst::Accept => {
                    self.recorded
                        .insert(t.start, Match::from_path(t.start, t.path.as_ref()));
                    cut.insert(t.start);
                    // Threads of this start already queued are more preferred: they stay; the
                    // ones still on the stack are less preferred.
                    stack.retain(|s| s.start != t.start);
                }
            }
        }
    }

    /// No row can come any more for matches that would end after `watermark` is passed: threads
    /// whose `WITHIN` bound the watermark has passed die, and what was waiting on them is decided.
    pub fn advance(&mut self, watermark: Millis, out: &mut Vec<Match>) {
        if let Some(within) = self.limits.within {
            self.threads
                .retain(|t| t.start_time.saturating_add(within) >= watermark);
        }
        self.finalize(out);
    }

    /// The partition's input has ended: every recorded match is final.
    pub fn finish(&mut self, out: &mut Vec<Match>) {
        self.threads.clear();
        self.finalize(out);
    }

    fn enforce_limit(&mut self) {
        while self.threads.len() > self.limits.max_threads {
            let Some(oldest) = self.threads.iter().map(|t| t.start).min() else {
                break;
            };
            let before = self.threads.len();
            self.threads.retain(|t| t.start != oldest);
            self.dropped += (before - self.threads.len()) as u64;
        }
    }

    /// Reports the matches that are decided, first rows first, and skips as told.
    fn finalize(&mut self, out: &mut Vec<Match>) {
        loop {
            let live = self.threads.iter().map(|t| t.start).min();
            let Some((&start, _)) = self.recorded.iter().next() else {
                return;
            };
            if live.is_some_and(|l| l <= start) {
                // The earliest start is still undecided (or an earlier one may still match).
                return;
            }
            let Some(m) = self.recorded.remove(&start) else {
                return;
            };
            let last = m.rows.last().map(|r| r.0);
            // After an empty match, matching resumes at the next row whatever the skip mode.
            let to = match (self.skip, last) {
                (_, None) | (SkipTo::NextRow, _) => Some(start + 1),
                (SkipTo::PastLastRow, Some(l)) => Some(l + 1),
                (SkipTo::FirstOf(v), _) => m.rows.iter().find(|r| r.1 == v).map(|r| r.0),
                (SkipTo::LastOf(v), _) => m.rows.iter().rev().find(|r| r.1 == v).map(|r| r.0),
            };
            // Skipping to a variable the match does not map, or to the match's first row (which
            // would find the same match again), is an exception in the standard.
            let Some(next) = to.filter(|&n| n > start) else {
                self.failed = Some(start);
                self.threads.clear();
                self.recorded.clear();
                return;
            };
            self.next_start = self.next_start.max(next);
            let from = self.next_start;
            self.threads.retain(|t| t.start >= from);
            self.recorded = self.recorded.split_off(&from);
            out.push(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::pattern::Pattern;

    #[test]
    fn partial_matches_are_capped_per_partition() {
        // A+ B with B never true: every row starts a partial match that never ends.
        let pattern = Pattern::Concat(vec![
            Pattern::Repeat {
                inner: Box::new(Pattern::Var(0)),
                min: 1,
                max: None,
                greedy: true,
            },
            Pattern::Var(1),
        ]);
        let program = Arc::new(Program::compile(&pattern).expect("compiles"));
        let limits = MatcherLimits {
            max_threads: 50,
            within: None,
        };
        let mut m = Matcher::new(program, SkipTo::PastLastRow, limits);
        let mut out = Vec::new();
        for t in 0..1_000 {
            m.push(t, &mut |v: usize| v == 0, &mut out);
            assert!(
                m.partial_matches() <= 50,
                "{} partial matches",
                m.partial_matches()
            );
        }
        assert!(out.is_empty());
        assert!(m.dropped > 900, "only {} dropped", m.dropped);
        // Rows before the oldest partial match still alive are not needed any more.
        assert!(m.oldest_needed() > 900);
    }

    #[test]
    fn within_ends_partial_matches_as_the_watermark_passes() {
        let pattern = Pattern::Concat(vec![Pattern::Var(0), Pattern::Var(1)]);
        let program = Arc::new(Program::compile(&pattern).expect("compiles"));
        let limits = MatcherLimits {
            max_threads: 100,
            within: Some(10),
        };
        let mut m = Matcher::new(program, SkipTo::PastLastRow, limits);
        let mut out = Vec::new();
        m.push(0, &mut |v: usize| v == 0, &mut out);
        assert_eq!(m.partial_matches(), 1);
        m.advance(11, &mut out);
        assert!(
            m.is_idle(),
            "the partial match cannot finish within 10 ms any more"
        );
    }
}
