//! MATCH_RECOGNIZE syntax sqlparser 0.62 does not read, rewritten token by token into syntax it
//! does (each new token keeps the place of the one it stands for, so errors still point into the
//! file): `RUNNING` / `FINAL` before a navigation or aggregate call, the `SUBSET` clause, the
//! empty pattern `()`, the quantifier `{,}` and `AFTER MATCH SKIP TO var`.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

/// The prefix a call's name gets when `FINAL` stands before it: `FINAL LAST(A.x)` reaches the
/// planner as `__final_LAST(A.x)`.
pub const FINAL_PREFIX: &str = "__final_";

/// `SUBSET U = (A, B)` reaches the planner as the entry `U AS __subset(A, B)` of `DEFINE`.
pub const SUBSET_FUNCTION: &str = "__subset";

/// The empty pattern `()` reaches the planner as `(__empty)`.
pub const EMPTY_PATTERN: &str = "__empty";

/// Every rewrite of this module, in the order they need.
pub fn rewrite(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let tokens = navigation_semantics(tokens);
    let tokens = pattern_shorthands(tokens);
    let tokens = skip_to_last(tokens);
    subset_into_define(tokens)
}

fn significant(tokens: &[TokenWithSpan]) -> Vec<usize> {
    (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect()
}

fn at(span_of: &TokenWithSpan, token: Token) -> TokenWithSpan {
    TokenWithSpan {
        token,
        span: span_of.span,
    }
}

/// Inside `PATTERN ( ... )`: `{,}` becomes `*` (both bounds omitted), `()` becomes
/// `(__empty)`, and an exclusion `{- B -}` is put in parentheses.
fn pattern_shorthands(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let sig = significant(&tokens);
    let mut replace: Vec<(usize, usize, Vec<Token>)> = Vec::new();
    let mut k = 0;
    while k + 1 < sig.len() {
        if !(word_is(&tokens[sig[k]].token, "PATTERN") && tokens[sig[k + 1]].token == Token::LParen)
        {
            k += 1;
            continue;
        }
        let mut depth = 0usize;
        let mut j = k + 1;
        while j < sig.len() {
            let t = &tokens[sig[j]].token;
            let next = sig.get(j + 1).map(|&i| &tokens[i].token);
            match t {
                Token::LParen if next == Some(&Token::RParen) => {
                    depth += 1;
                    replace.push((
                        sig[j],
                        sig[j],
                        vec![Token::LParen, Token::make_word(EMPTY_PATTERN, None)],
                    ));
                    j += 1;
                    continue;
                }
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                // sqlparser reads `{` after a variable as its quantifier: `A {- B -}` is
                // given as `A ({- B -})`.
                Token::LBrace if next == Some(&Token::Minus) => {
                    replace.push((sig[j], sig[j], vec![Token::LParen, Token::LBrace]));
                }
                Token::Minus if next == Some(&Token::RBrace) => {
                    replace.push((sig[j + 1], sig[j + 1], vec![Token::RBrace, Token::RParen]));
                    j += 2;
                    continue;
                }
                Token::LBrace
                    if next == Some(&Token::Comma)
                        && sig.get(j + 2).map(|&i| &tokens[i].token) == Some(&Token::RBrace) =>
                {
                    replace.push((sig[j], sig[j + 2], vec![Token::Mul]));
                    j += 3;
                    continue;
                }
                _ => {}
            }
            j += 1;
        }
        k = j + 1;
    }
    splice(tokens, replace)
}

/// Replaces each range of tokens (first and last index, inclusive) by the given tokens, placed
/// where the range starts.
fn splice(
    tokens: Vec<TokenWithSpan>,
    replace: Vec<(usize, usize, Vec<Token>)>,
) -> Vec<TokenWithSpan> {
    if replace.is_empty() {
        return tokens;
    }
    let mut out = Vec::with_capacity(tokens.len() + replace.len());
    let mut i = 0;
    for (from, to, new) in replace {
        out.extend_from_slice(&tokens[i..from]);
        let place = tokens[from].clone();
        out.extend(new.into_iter().map(|t| at(&place, t)));
        i = to + 1;
    }
    out.extend_from_slice(&tokens[i..]);
    out
}

/// `AFTER MATCH SKIP TO var` means `SKIP TO LAST var`.
fn skip_to_last(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let sig = significant(&tokens);
    let mut replace = Vec::new();
    for k in 3..sig.len().saturating_sub(1) {
        let w = |d: usize, s: &str| word_is(&tokens[sig[k - d]].token, s);
        let var = &tokens[sig[k + 1]].token;
        if w(0, "TO")
            && w(1, "SKIP")
            && w(2, "MATCH")
            && w(3, "AFTER")
            && matches!(var, Token::Word(_))
            && !["NEXT", "FIRST", "LAST"].iter().any(|x| word_is(var, x))
        {
            replace.push((
                sig[k],
                sig[k],
                vec![
                    Token::make_keyword("TO"),
                    Token::Whitespace(Whitespace::Space),
                    Token::make_keyword("LAST"),
                ],
            ));
        }
    }
    splice(tokens, replace)
}

/// `SUBSET U = (A, B), V = (C)` before `DEFINE` (or Flink's `WITHIN`) becomes the entries
/// `U AS __subset(A, B), V AS __subset(C),` at the head of the `DEFINE` list.
fn subset_into_define(mut tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    // One clause at a time (a file may have several MATCH_RECOGNIZE); a clause left as it is
    // (sqlparser reports it) ends the rewriting.
    while let Some(rewritten) = one_subset_into_define(&tokens) {
        tokens = rewritten;
    }
    tokens
}

fn one_subset_into_define(tokens: &[TokenWithSpan]) -> Option<Vec<TokenWithSpan>> {
    let sig = significant(tokens);
    let k = (0..sig.len()).find(|&k| {
        word_is(&tokens[sig[k]].token, "SUBSET")
            && sig
                .get(k + 2)
                .is_some_and(|&i| tokens[i].token == Token::Eq)
    })?;
    let end = (k + 1..sig.len()).find(|&e| {
        word_is(&tokens[sig[e]].token, "DEFINE") || word_is(&tokens[sig[e]].token, "WITHIN")
    })?;
    let define = (end..sig.len()).find(|&e| word_is(&tokens[sig[e]].token, "DEFINE"))?;
    // Each entry: name = ( members ), as significant tokens.
    let mut entries: Vec<TokenWithSpan> = Vec::new();
    let mut j = k + 1;
    while j < end {
        let (Some(&name), Some(&eq), Some(&open)) = (sig.get(j), sig.get(j + 1), sig.get(j + 2))
        else {
            return None;
        };
        if !matches!(tokens[name].token, Token::Word(_))
            || tokens[eq].token != Token::Eq
            || tokens[open].token != Token::LParen
        {
            return None;
        }
        let close = (j + 3..end).find(|&c| tokens[sig[c]].token == Token::RParen)?;
        let here = &tokens[name];
        entries.push(here.clone());
        entries.push(at(here, Token::Whitespace(Whitespace::Space)));
        entries.push(at(here, Token::make_keyword("AS")));
        entries.push(at(here, Token::Whitespace(Whitespace::Space)));
        entries.push(at(here, Token::make_word(SUBSET_FUNCTION, None)));
        entries.extend_from_slice(&tokens[open..=sig[close]]);
        entries.push(at(here, Token::Comma));
        entries.push(at(here, Token::Whitespace(Whitespace::Space)));
        j = close + 1;
        if sig.get(j).is_some_and(|&i| tokens[i].token == Token::Comma) {
            j += 1;
        }
    }
    let mut out = Vec::with_capacity(tokens.len() + 4);
    out.extend_from_slice(&tokens[..sig[k]]);
    out.extend_from_slice(&tokens[sig[end]..=sig[define]]);
    out.push(at(
        &tokens[sig[define]],
        Token::Whitespace(Whitespace::Space),
    ));
    out.extend(entries);
    out.extend_from_slice(&tokens[sig[define] + 1..]);
    Some(out)
}

fn word_is(t: &Token, word: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// `RUNNING f(...)` becomes `f(...)` (running is what a call means without it), and
/// `FINAL f(...)` becomes `__final_f(...)`.
fn navigation_semantics(mut tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    for k in 0..significant.len().saturating_sub(2) {
        let (i, name, paren) = (significant[k], significant[k + 1], significant[k + 2]);
        let running = word_is(&tokens[i].token, "RUNNING");
        let final_ = word_is(&tokens[i].token, "FINAL");
        if !(running || final_) || tokens[paren].token != Token::LParen {
            continue;
        }
        let Token::Word(w) = &tokens[name].token else {
            continue;
        };
        if w.quote_style.is_some() {
            continue;
        }
        if final_ {
            let renamed = Token::make_word(&format!("{FINAL_PREFIX}{}", w.value), None);
            tokens[name] = TokenWithSpan {
                token: renamed,
                span: tokens[i].span,
            };
        }
        tokens[i].token = Token::Whitespace(Whitespace::Space);
    }
    tokens
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    use super::rewrite;

    /// The text `sql` becomes, its whitespace collapsed.
    fn rewritten(sql: &str) -> String {
        let tokens = Tokenizer::new(&GenericDialect {}, sql)
            .tokenize_with_location()
            .expect("tokenizes");
        let text: String = rewrite(tokens)
            .iter()
            .map(|t| t.token.to_string())
            .collect();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn running_is_dropped_and_final_marks_the_call() {
        assert_eq!(
            rewritten("MEASURES RUNNING LAST(A.x) AS r, FINAL COUNT(*) AS f"),
            "MEASURES LAST(A.x) AS r, __final_COUNT(*) AS f"
        );
    }

    #[test]
    fn pattern_shorthands_are_spelled_out_inside_pattern_only() {
        assert_eq!(
            rewritten("PATTERN (A{,} () B {- C -}+) DEFINE B AS x{,}"),
            "PATTERN (A* (__empty) B ({- C -})+) DEFINE B AS x{,}"
        );
    }

    #[test]
    fn skip_to_a_variable_skips_to_its_last_row() {
        assert_eq!(
            rewritten("AFTER MATCH SKIP TO B PATTERN (A B)"),
            "AFTER MATCH SKIP TO LAST B PATTERN (A B)"
        );
        assert_eq!(
            rewritten("AFTER MATCH SKIP TO NEXT ROW"),
            "AFTER MATCH SKIP TO NEXT ROW"
        );
    }

    #[test]
    fn every_subset_clause_moves_into_its_define_list() {
        assert_eq!(
            rewritten(
                "PATTERN (A B) SUBSET U = (A, B), \"v\" = (B) DEFINE B AS x; \
                 PATTERN (C) SUBSET W = (C) WITHIN INTERVAL '1' MINUTE DEFINE C AS y"
            ),
            "PATTERN (A B) DEFINE U AS __subset(A, B), \"v\" AS __subset(B), B AS x; \
             PATTERN (C) WITHIN INTERVAL '1' MINUTE DEFINE W AS __subset(C), C AS y"
        );
    }
}
