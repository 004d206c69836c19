//! PATTERN: the row pattern as sqlparser reads it, turned into the matcher's [`Pattern`]; what a
//! stream cannot mean (anchors) or Eddy does not run yet is an error at the clause.

use datafusion::sql::sqlparser::ast::{
    MatchRecognizePattern, MatchRecognizeSymbol, RepetitionQuantifier,
};

use super::err;
use crate::error::{Location, SqlError};
use crate::ops::pattern::Pattern;
use crate::sql::row_pattern::EMPTY_PATTERN;

pub(super) fn to_pattern(
    p: &MatchRecognizePattern,
    vars: &mut Vec<String>,
    at: Location,
) -> Result<Pattern, SqlError> {
    use MatchRecognizePattern as P;
    Ok(match p {
        P::Symbol(MatchRecognizeSymbol::Named(id))
            if id.quote_style.is_none() && id.value == EMPTY_PATTERN =>
        {
            Pattern::Concat(Vec::new())
        }
        P::Symbol(MatchRecognizeSymbol::Named(id)) => {
            let name = super::var_name(id);
            let v = match vars.iter().position(|x| *x == name) {
                Some(v) => v,
                None => {
                    vars.push(name);
                    vars.len() - 1
                }
            };
            Pattern::Var(v)
        }
        P::Symbol(_) => {
            return Err(err(
                at,
                "PATTERN anchors ^ and $ have no meaning on a stream, which has no first or last row; remove them",
            ));
        }
        P::Exclude(symbol) => {
            Pattern::Exclude(Box::new(to_pattern(&P::Symbol(symbol.clone()), vars, at)?))
        }
        P::Permute(symbols) => {
            let mut parts = Vec::with_capacity(symbols.len());
            for s in symbols {
                parts.push(to_pattern(&P::Symbol(s.clone()), vars, at)?);
            }
            permute(parts, at)?
        }
        P::Concat(parts) => Pattern::Concat(
            parts
                .iter()
                .map(|x| to_pattern(x, vars, at))
                .collect::<Result<_, _>>()?,
        ),
        P::Group(inner) => to_pattern(inner, vars, at)?,
        P::Alternation(options) => Pattern::Alt(
            options
                .iter()
                .map(|x| to_pattern(x, vars, at))
                .collect::<Result<_, _>>()?,
        ),
        // sqlparser reads a reluctant `X+?` as `(X+)?` without a group in between.
        P::Repetition(inner, RepetitionQuantifier::AtMostOne)
            if matches!(inner.as_ref(), P::Repetition(_, _)) =>
        {
            let P::Repetition(x, q) = inner.as_ref() else {
                unreachable!("checked by the guard")
            };
            repeat(to_pattern(x, vars, at)?, q, false)
        }
        P::Repetition(inner, q) => repeat(to_pattern(inner, vars, at)?, q, true),
    })
}

/// `PERMUTE(A, B, C)`, refused when it has more orders than a pattern may have steps.
fn permute(parts: Vec<Pattern>, at: Location) -> Result<Pattern, SqlError> {
    // 8 parts are 40,320 orders.
    const MAX_PARTS: usize = 7;
    if parts.len() > MAX_PARTS {
        return Err(err(
            at,
            format!("PERMUTE of more than {MAX_PARTS} variables has too many orders to match"),
        ));
    }
    Ok(Pattern::Permute(parts))
}

fn repeat(inner: Pattern, q: &RepetitionQuantifier, greedy: bool) -> Pattern {
    use RepetitionQuantifier as Q;
    let (min, max) = match *q {
        Q::ZeroOrMore => (0, None),
        Q::OneOrMore => (1, None),
        Q::AtMostOne => (0, Some(1)),
        Q::Exactly(n) => (n, Some(n)),
        Q::AtLeast(n) => (n, None),
        Q::AtMost(n) => (0, Some(n)),
        Q::Range(n, m) => (n, Some(m)),
    };
    Pattern::Repeat {
        inner: Box::new(inner),
        min,
        max,
        greedy,
    }
}

/// Whether `p` repeats without bound a part that can match no rows (`(A?)*`, `()+`): the
/// standard's rule for such loops (an iteration that maps no row ends the repetition) is not the
/// matcher's, so such patterns are refused rather than answered differently.
pub(super) fn loops_on_nothing(p: &Pattern) -> bool {
    match p {
        Pattern::Var(_) => false,
        Pattern::Concat(parts) | Pattern::Alt(parts) | Pattern::Permute(parts) => {
            parts.iter().any(loops_on_nothing)
        }
        Pattern::Repeat { inner, max, .. } => {
            (max.is_none() && nullable(inner)) || loops_on_nothing(inner)
        }
        Pattern::Exclude(inner) => loops_on_nothing(inner),
    }
}

/// Whether every non-empty match of `p` maps a row to `v`, after its first row: otherwise
/// `AFTER MATCH SKIP TO FIRST v` / `LAST v` could find nowhere to go, or go back to the match's
/// first row, which the standard makes an error at run time.
pub(super) fn skip_always_moves(p: &Pattern, v: usize, last: bool) -> bool {
    always_maps(p, v) && (!can_start_with(p, v) || (last && always_maps_twice(p, v)))
}

/// Every non-empty match of `p` maps a row to `v`.
fn always_maps(p: &Pattern, v: usize) -> bool {
    match p {
        Pattern::Var(x) => *x == v,
        Pattern::Concat(parts) | Pattern::Permute(parts) => parts.iter().any(|x| always_maps(x, v)),
        Pattern::Alt(options) => options.iter().all(|x| always_maps(x, v)),
        Pattern::Repeat { inner, min, .. } => *min > 0 && always_maps(inner, v),
        Pattern::Exclude(inner) => always_maps(inner, v),
    }
}

/// Every match of `p` maps at least two rows to `v` (so its last one is not the first row).
fn always_maps_twice(p: &Pattern, v: usize) -> bool {
    fn count(p: &Pattern, v: usize) -> u32 {
        match p {
            Pattern::Var(x) => u32::from(*x == v),
            Pattern::Concat(parts) | Pattern::Permute(parts) => {
                parts.iter().map(|x| count(x, v)).sum()
            }
            Pattern::Alt(options) => options.iter().map(|x| count(x, v)).min().unwrap_or(0),
            Pattern::Repeat { inner, min, .. } => min.saturating_mul(count(inner, v)),
            Pattern::Exclude(inner) => count(inner, v),
        }
    }
    count(p, v) >= 2
}

/// Some match of `p` may map its first row to `v`.
fn can_start_with(p: &Pattern, v: usize) -> bool {
    match p {
        Pattern::Var(x) => *x == v,
        Pattern::Concat(parts) => {
            for x in parts {
                if can_start_with(x, v) {
                    return true;
                }
                if !nullable(x) {
                    return false;
                }
            }
            false
        }
        Pattern::Alt(parts) | Pattern::Permute(parts) => parts.iter().any(|x| can_start_with(x, v)),
        Pattern::Repeat { inner, max, .. } => *max != Some(0) && can_start_with(inner, v),
        Pattern::Exclude(inner) => can_start_with(inner, v),
    }
}

/// `p` can match no rows.
fn nullable(p: &Pattern) -> bool {
    match p {
        Pattern::Var(_) => false,
        Pattern::Concat(parts) | Pattern::Permute(parts) => parts.iter().all(nullable),
        Pattern::Alt(options) => options.iter().any(nullable),
        Pattern::Repeat { inner, min, .. } => *min == 0 || nullable(inner),
        Pattern::Exclude(inner) => nullable(inner),
    }
}
