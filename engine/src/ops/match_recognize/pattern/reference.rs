//! A backtracking matcher over a whole partition, written straight from the standard's
//! definition, and the property test that the streaming matcher finds the same matches (and the
//! same excluded rows) for random patterns (with `PERMUTE` and exclusions `{- A -}`), rows, skip
//! modes and `WITHIN` bounds.

use std::sync::Arc;

use super::{Conditions, Match, Matcher, MatcherLimits, Pattern, Program, SkipTo, Step};
use crate::time::Millis;

/// The rows mapped so far, each with its variable and whether it is inside an exclusion.
type Path = Vec<(u64, usize, bool)>;
/// The rest of a match, from a position: whether it completes.
type Rest<'r> = dyn FnMut(usize, &mut Path) -> bool + 'r;

struct Rows<'a> {
    holds: &'a [Vec<bool>],
    times: &'a [Millis],
    within: Option<Millis>,
    /// A variable with a cap takes a row only while it has mapped fewer rows than the cap: a
    /// condition that reads the partial match (as `COUNT(B.*) < 3` does).
    caps: &'a [Option<usize>],
}

/// Tries `p` at `pos` in preference order; `k` is the rest of the match and says whether it
/// completed. `path` is the rows mapped so far; `excl`: `p` is inside an exclusion.
fn try_match(
    p: &Pattern,
    pos: usize,
    path: &mut Path,
    rows: &Rows,
    start: usize,
    excl: bool,
    k: &mut Rest,
) -> bool {
    match p {
        Pattern::Exclude(inner) => try_match(inner, pos, path, rows, start, true, k),
        Pattern::Permute(parts) => permute(parts, pos, path, rows, start, excl, k),
        Pattern::Var(v) => {
            if pos >= rows.holds.len() || !rows.holds[pos][*v] {
                return false;
            }
            if let Some(cap) = rows.caps[*v]
                && path.iter().filter(|(_, x, _)| x == v).count() >= cap
            {
                return false;
            }
            if let Some(w) = rows.within
                && rows.times[pos] - rows.times[start] > w
            {
                return false;
            }
            path.push((pos as u64, *v, excl));
            if k(pos + 1, path) {
                return true;
            }
            path.pop();
            false
        }
        Pattern::Concat(parts) => concat(parts, pos, path, rows, start, excl, k),
        Pattern::Alt(options) => options
            .iter()
            .any(|o| try_match(o, pos, path, rows, start, excl, k)),
        Pattern::Repeat {
            inner,
            min,
            max,
            greedy,
        } => repeat(
            inner,
            (*min, *max, *greedy),
            0,
            pos,
            path,
            rows,
            (start, excl),
            k,
        ),
    }
}

fn concat(
    parts: &[Pattern],
    pos: usize,
    path: &mut Path,
    rows: &Rows,
    start: usize,
    excl: bool,
    k: &mut Rest,
) -> bool {
    match parts.split_first() {
        None => k(pos, path),
        Some((first, rest)) => try_match(first, pos, path, rows, start, excl, &mut |p, path| {
            concat(rest, p, path, rows, start, excl, k)
        }),
    }
}

/// `PERMUTE`: by the standard, the alternation of every order of its parts, each whole order
/// tried (with all of its parts' own choices) before the next, orders in lexicographic order.
fn permute(
    parts: &[Pattern],
    pos: usize,
    path: &mut Path,
    rows: &Rows,
    start: usize,
    excl: bool,
    k: &mut Rest,
) -> bool {
    // Orders as numbers in base n with distinct digits, counted up: lexicographic.
    let n = parts.len();
    let total = n.pow(n as u32);
    (0..total).any(|code| {
        let digits: Vec<usize> = (0..n).rev().map(|d| code / n.pow(d as u32) % n).collect();
        let distinct = (0..n).all(|x| digits.contains(&x));
        distinct && {
            let order: Vec<Pattern> = digits.iter().map(|&d| parts[d].clone()).collect();
            concat(&order, pos, path, rows, start, excl, k)
        }
    })
}

/// `inner` repeated within `(min, max, greedy)`, `count` times so far; `(start, excl)` as for
/// [`try_match`].
#[allow(clippy::too_many_arguments)]
fn repeat(
    inner: &Pattern,
    bounds: (u32, Option<u32>, bool),
    count: u32,
    pos: usize,
    path: &mut Path,
    rows: &Rows,
    (start, excl): (usize, bool),
    k: &mut Rest,
) -> bool {
    let (min, max, greedy) = bounds;
    let can_more = max.is_none_or(|m| count < m);
    let can_stop = count >= min;
    // Reluctant: stop here first; greedy: one more repetition first.
    if !greedy && can_stop && k(pos, path) {
        return true;
    }
    let more = can_more
        && try_match(inner, pos, path, rows, start, excl, &mut |p, path| {
            repeat(inner, bounds, count + 1, p, path, rows, (start, excl), k)
        });
    more || (greedy && can_stop && k(pos, path))
}

/// Every match of `pattern` in the rows, as the standard defines them, up to the start of a match
/// `AFTER MATCH SKIP` cannot skip from (an exception), if any.
pub fn reference_matches(
    pattern: &Pattern,
    holds: &[Vec<bool>],
    times: &[Millis],
    skip: SkipTo,
    within: Option<Millis>,
    caps: &[Option<usize>],
) -> (Vec<Match>, Option<u64>) {
    let rows = Rows {
        holds,
        times,
        within,
        caps,
    };
    let mut out = Vec::new();
    let mut start = 0;
    while start < holds.len() {
        let mut found = None;
        let mut path = Vec::new();
        try_match(
            pattern,
            start,
            &mut path,
            &rows,
            start,
            false,
            &mut |_, path| {
                found = Some(path.clone());
                true
            },
        );
        match found {
            None => start += 1,
            Some(path) => {
                let m = Match {
                    start: start as u64,
                    rows: path.iter().map(|&(r, v, _)| (r, v)).collect(),
                    excluded: path.iter().filter(|p| p.2).map(|p| p.0).collect(),
                };
                // A non-empty match resumes where the skip mode says; skipping to a variable
                // it does not map, or to its own first row, is an exception.
                let next = if m.rows.is_empty() {
                    Some(start + 1)
                } else {
                    let mapped = |v: usize| m.rows.iter().filter(move |r| r.1 == v);
                    match skip {
                        SkipTo::PastLastRow => m.rows.last().map(|l| l.0 as usize + 1),
                        SkipTo::NextRow => Some(start + 1),
                        SkipTo::FirstOf(v) => mapped(v).next().map(|r| r.0 as usize),
                        SkipTo::LastOf(v) => mapped(v).next_back().map(|r| r.0 as usize),
                    }
                };
                let Some(next) = next.filter(|&n| n != start) else {
                    return (out, Some(start as u64));
                };
                out.push(m);
                start = next;
            }
        }
    }
    (out, None)
}

/// Runs the streaming matcher over the same rows.
/// Conditions of the property test: the row's value, and a cap on the rows a variable has taken.
struct Capped<'a> {
    row: &'a [bool],
    caps: &'a [Option<usize>],
}

impl Conditions for Capped<'_> {
    fn eval(&mut self, candidates: &[(usize, Option<&Arc<Step>>)]) -> Vec<bool> {
        candidates
            .iter()
            .map(|&(v, path)| {
                self.row[v]
                    && self.caps[v]
                        .is_none_or(|cap| Step::iter(path).filter(|s| s.var == v).count() < cap)
            })
            .collect()
    }
}

pub fn streaming_matches(
    pattern: &Pattern,
    holds: &[Vec<bool>],
    times: &[Millis],
    skip: SkipTo,
    within: Option<Millis>,
    caps: &[Option<usize>],
) -> (Vec<Match>, Option<u64>) {
    let program = Arc::new(Program::compile(pattern).expect("compiles"));
    let mut m = Matcher::reading(
        program,
        skip,
        MatcherLimits {
            max_threads: 1_000_000,
            within,
        },
        caps.iter().map(Option::is_some).collect(),
    );
    let mut out = Vec::new();
    for (row, t) in holds.iter().zip(times) {
        m.push(*t, &mut Capped { row, caps }, &mut out);
        m.advance(*t, &mut out);
        if m.failed.is_some() {
            return (out, m.failed);
        }
    }
    m.finish(&mut out);
    (out, m.failed)
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn nullable(p: &Pattern) -> bool {
    match p {
        Pattern::Var(_) => false,
        Pattern::Concat(ps) => ps.iter().all(nullable),
        Pattern::Alt(ps) => ps.iter().any(nullable),
        Pattern::Repeat { inner, min, .. } => *min == 0 || nullable(inner),
        Pattern::Exclude(inner) => nullable(inner),
        Pattern::Permute(parts) => parts.iter().all(nullable),
    }
}

fn random_pattern(rng: &mut Lcg, vars: usize, depth: u32) -> Pattern {
    let leaf = depth == 0 || rng.next(3) == 0;
    if leaf {
        let v = Pattern::Var(rng.next(vars as u64) as usize);
        // Now and then an excluded row, `{- A -}`: it matches as A does.
        return if rng.next(6) == 0 {
            Pattern::Exclude(Box::new(v))
        } else {
            v
        };
    }
    if rng.next(8) == 0 {
        return Pattern::Permute(
            (0..2 + rng.next(2))
                .map(|_| random_pattern(rng, vars, depth - 1))
                .collect(),
        );
    }
    match rng.next(3) {
        0 => Pattern::Concat(
            (0..2 + rng.next(2))
                .map(|_| random_pattern(rng, vars, depth - 1))
                .collect(),
        ),
        1 => Pattern::Alt(
            (0..2 + rng.next(2))
                .map(|_| random_pattern(rng, vars, depth - 1))
                .collect(),
        ),
        _ => {
            let mut inner = random_pattern(rng, vars, depth - 1);
            let (min, max) = match rng.next(6) {
                0 => (0, None),
                1 => (1, None),
                2 => (0, Some(1)),
                3 => (2, Some(2)),
                4 => (1, Some(3)),
                _ => (2, None),
            };
            // Loops whose body can match nothing are a corner the two matchers may order
            // differently; patterns of real rules do not loop on nothing.
            if max.is_none() && nullable(&inner) {
                inner = Pattern::Var(rng.next(vars as u64) as usize);
            }
            Pattern::Repeat {
                inner: Box::new(inner),
                min,
                max,
                greedy: rng.next(2) == 0,
            }
        }
    }
}

#[test]
fn streaming_matches_equal_backtracking_matches() {
    let mut rng = Lcg(7);
    for case in 0..5_000 {
        let vars = 1 + rng.next(3) as usize;
        let pattern = random_pattern(&mut rng, vars, 3);
        let n = rng.next(14) as usize;
        let holds: Vec<Vec<bool>> = (0..n)
            .map(|_| (0..vars).map(|_| rng.next(3) != 0).collect())
            .collect();
        let mut t = 0;
        let times: Vec<Millis> = (0..n)
            .map(|_| {
                t += 1 + rng.next(3) as Millis;
                t
            })
            .collect();
        let skip = match rng.next(4) {
            0 => SkipTo::PastLastRow,
            1 => SkipTo::NextRow,
            2 => SkipTo::FirstOf(rng.next(vars as u64) as usize),
            _ => SkipTo::LastOf(rng.next(vars as u64) as usize),
        };
        let within = (rng.next(3) == 0).then(|| 2 + rng.next(6) as Millis);
        let caps: Vec<Option<usize>> = (0..vars)
            .map(|_| (rng.next(3) == 0).then(|| 1 + rng.next(3) as usize))
            .collect();
        let expected = reference_matches(&pattern, &holds, &times, skip, within, &caps);
        let got = streaming_matches(&pattern, &holds, &times, skip, within, &caps);
        assert_eq!(
            got, expected,
            "case {case}: pattern {pattern:?}, rows {holds:?}, times {times:?}, skip {skip:?}, within {within:?}, caps {caps:?}"
        );
    }
}
