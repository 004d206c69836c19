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
