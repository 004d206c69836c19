//! Row patterns of `MATCH_RECOGNIZE`: the pattern as written ([`Pattern`]), compiled to a small
//! automaton ([`Program`]) that [`Matcher`] runs over each partition's rows, one row at a time.
//!
//! The automaton's instructions are ordered by preference (greedy quantifiers try one more
//! repetition first, reluctant ones one fewer, alternatives left to right), and the matcher runs
//! all its threads side by side in that order (a Pike VM): the match it reports for a start row is
//! the one a backtracking matcher would find first, without ever going back over rows.

mod matcher;

pub use matcher::{Conditions, Match, Matcher, MatcherLimits, MatcherState, SkipTo, Step};

/// A row pattern over variables `0..n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// One row that satisfies the variable's condition.
    Var(usize),
    Concat(Vec<Pattern>),
    /// Alternatives, preferred left to right.
    Alt(Vec<Pattern>),
    Repeat {
        inner: Box<Pattern>,
        min: u32,
        /// `None`: unbounded.
        max: Option<u32>,
        /// Greedy (`*`, `+`, `{n,m}`) prefers more repetitions; reluctant (`*?`) fewer.
        greedy: bool,
    },
    /// `{- ... -}`: rows part of the match but not output by `ALL ROWS PER MATCH`.
    Exclude(Box<Pattern>),
    /// `PERMUTE(A, B, C)`: the parts in every order, orders preferred lexicographically by the
    /// parts' places in the list (`A B C`, `A C B`, `B A C`, ...), as the standard says.
    Permute(Vec<Pattern>),
}

/// One instruction of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inst {
    /// Consume the row if it satisfies the variable's condition.
    Row(usize),
    /// Continue at both, preferring the first.
    Split(usize, usize),
    Jump(usize),
    /// The pattern has matched.
    Accept,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Program {
    pub insts: Vec<Inst>,
    /// Per instruction: a row it takes is excluded from the output (`{- ... -}`).
    pub excluded: Vec<bool>,
}

/// More instructions than this and the pattern is refused (`{1,100000}` expands into copies).
const MAX_INSTRUCTIONS: usize = 10_000;

impl Program {
    pub fn compile(pattern: &Pattern) -> Result<Self, String> {
        let mut insts = Vec::new();
        let mut excluded = Vec::new();
        emit(pattern, &mut insts, &mut excluded)?;
        insts.push(Inst::Accept);
        excluded.resize(insts.len(), false);
        Ok(Self { insts, excluded })
    }
}

/// Appends the instructions of `p`; `excluded` lists the instructions inside an exclusion.
fn emit(p: &Pattern, insts: &mut Vec<Inst>, excluded: &mut Vec<bool>) -> Result<(), String> {
    if insts.len() > MAX_INSTRUCTIONS {
        return Err(format!(
            "the pattern is too large once its quantifiers are expanded (more than {MAX_INSTRUCTIONS} steps); use smaller bounds"
        ));
    }
    match p {
        Pattern::Var(v) => insts.push(Inst::Row(*v)),
        Pattern::Permute(parts) => {
            let mut orders = Vec::new();
            permutations(parts.len(), &mut Vec::new(), &mut orders);
            let alternatives = orders
                .into_iter()
                .map(|o| Pattern::Concat(o.into_iter().map(|i| parts[i].clone()).collect()))
                .collect();
            emit(&Pattern::Alt(alternatives), insts, excluded)?;
        }
        Pattern::Exclude(inner) => {
            let from = insts.len();
            emit(inner, insts, excluded)?;
            excluded.resize(insts.len(), false);
            excluded[from..].iter_mut().for_each(|e| *e = true);
        }
        Pattern::Concat(parts) => {
            for part in parts {
                emit(part, insts, excluded)?;
            }
        }
        Pattern::Alt(options) => {
            // split L1, next; L1: a; jump end; next: split L2, next2; ...
            let mut jumps = Vec::new();
            for (i, option) in options.iter().enumerate() {
                if i + 1 < options.len() {
                    let split = insts.len();
                    insts.push(Inst::Split(split + 1, 0));
                    emit(option, insts, excluded)?;
                    jumps.push(insts.len());
                    insts.push(Inst::Jump(0));
                    let next = insts.len();
                    insts[split] = Inst::Split(split + 1, next);
                } else {
                    emit(option, insts, excluded)?;
                }
            }
            let end = insts.len();
            for j in jumps {
                insts[j] = Inst::Jump(end);
            }
        }
        Pattern::Repeat {
            inner,
            min,
            max,
            greedy,
        } => {
            for _ in 0..*min {
                emit(inner, insts, excluded)?;
            }
            match max {
                None => {
                    // loop: split body, end; body; jump loop
                    let split = insts.len();
                    insts.push(Inst::Split(0, 0));
                    emit(inner, insts, excluded)?;
                    insts.push(Inst::Jump(split));
                    let end = insts.len();
                    insts[split] = prefer(*greedy, split + 1, end);
                }
                Some(max) => {
                    // Each optional repetition: split body, end.
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(insts.len());
                        insts.push(Inst::Split(0, 0));
                        emit(inner, insts, excluded)?;
                    }
                    let end = insts.len();
                    for s in splits {
                        insts[s] = prefer(*greedy, s + 1, end);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Every order of `0..n` that extends `order`, in lexicographic order.
fn permutations(n: usize, order: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    if order.len() == n {
        out.push(order.clone());
        return;
    }
    for i in 0..n {
        if !order.contains(&i) {
            order.push(i);
            permutations(n, order, out);
            order.pop();
        }
    }
}

/// A split that tries `more` first when greedy, `done` first when reluctant.
fn prefer(greedy: bool, more: usize, done: usize) -> Inst {
    if greedy {
        Inst::Split(more, done)
    } else {
        Inst::Split(done, more)
    }
}

#[cfg(test)]
mod reference;
