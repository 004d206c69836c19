//! Window frame exclusions sqlparser does not read, rewritten into frames it does: in a `ROWS`
//! frame that ends at the current row, `EXCLUDE CURRENT ROW` leaves the frame's other rows, which
//! is the frame ending at `1 PRECEDING`; `EXCLUDE NO OTHERS` is the default and goes. Other
//! exclusions (`GROUP`, `TIES`, or any in a `RANGE` frame or one reaching after the current row)
//! are errors at their place.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

use crate::error::SqlError;

pub fn rewrite(tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>, SqlError> {
    let sig: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let word = |k: usize, w: &str| {
        sig.get(k).is_some_and(
            |&i| matches!(&tokens[i].token, Token::Word(x) if x.value.eq_ignore_ascii_case(w)),
        )
    };
    // Ranges of tokens (first and last index, inclusive) and what replaces them.
    let mut replace: Vec<(usize, usize, Vec<Token>)> = Vec::new();
    let mut k = 0;
    while k < sig.len() {
        if !word(k, "EXCLUDE") {
            k += 1;
            continue;
        }
        if word(k + 1, "NO") && word(k + 2, "OTHERS") {
            replace.push((sig[k], sig[k + 2], Vec::new()));
            k += 3;
            continue;
        }
        let ends_at_current_row = k >= 2 && word(k - 2, "CURRENT") && word(k - 1, "ROW");
        let excludes_current_row = word(k + 1, "CURRENT") && word(k + 2, "ROW");
        // The frame's units: the nearest ROWS, RANGE or GROUPS before.
        let rows = (0..k)
            .rev()
            .find(|&j| word(j, "ROWS") || word(j, "RANGE") || word(j, "GROUPS"))
            .is_some_and(|j| word(j, "ROWS"));
        if ends_at_current_row && excludes_current_row && rows {
            replace.push((
                sig[k - 2],
                sig[k + 2],
                vec![
                    Token::Number("1".into(), false),
                    Token::Whitespace(Whitespace::Space),
                    Token::make_keyword("PRECEDING"),
                ],
            ));
            k += 3;
            continue;
        }
        return Err(SqlError::new(
            tokens[sig[k]].span.start,
            "this window frame exclusion is not supported: EXCLUDE CURRENT ROW is, in a ROWS frame that ends at CURRENT ROW (the frame ending at 1 PRECEDING), and EXCLUDE NO OTHERS",
        ));
    }
    if replace.is_empty() {
        return Ok(tokens);
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    for (from, to, new) in replace {
        out.extend_from_slice(&tokens[i..from]);
        let span = tokens[from].span;
        out.extend(new.into_iter().map(|token| TokenWithSpan { token, span }));
        i = to + 1;
    }
    out.extend_from_slice(&tokens[i..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    use super::*;

    fn rewritten(sql: &str) -> Result<String, SqlError> {
        let tokens = Tokenizer::new(&GenericDialect {}, sql)
            .tokenize_with_location()
            .expect("tokens");
        Ok(rewrite(tokens)?
            .iter()
            .map(|t| t.token.to_string())
            .collect())
    }

    #[test]
    fn exclude_current_row_of_a_rows_frame_ends_it_one_row_before() {
        assert_eq!(
            rewritten("ROWS BETWEEN 3 PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW)").ok(),
            Some("ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING)".to_string())
        );
        assert_eq!(
            rewritten("ROWS BETWEEN 3 PRECEDING AND CURRENT ROW EXCLUDE NO OTHERS)").ok(),
            Some("ROWS BETWEEN 3 PRECEDING AND CURRENT ROW )".to_string())
        );
    }

    #[test]
    fn other_exclusions_are_errors_at_their_place() {
        for sql in [
            "RANGE BETWEEN INTERVAL '1' MINUTE PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW",
            "ROWS BETWEEN 3 PRECEDING AND 2 FOLLOWING EXCLUDE CURRENT ROW",
            "ROWS BETWEEN 3 PRECEDING AND CURRENT ROW EXCLUDE TIES",
        ] {
            let err = rewritten(sql).expect_err(sql);
            assert_eq!(
                err.location.column as usize,
                sql.find("EXCLUDE").expect("EXCLUDE") + 1
            );
        }
    }
}
