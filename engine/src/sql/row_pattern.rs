//! MATCH_RECOGNIZE syntax sqlparser 0.62 does not read, rewritten token by token into syntax it
//! does (each new token keeps the place of the one it stands for, so errors still point into the
//! file): `RUNNING` / `FINAL` before a navigation or aggregate call.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

/// The prefix a call's name gets when `FINAL` stands before it: `FINAL LAST(A.x)` reaches the
/// planner as `__final_LAST(A.x)`.
pub const FINAL_PREFIX: &str = "__final_";

fn word_is(t: &Token, word: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// `RUNNING f(...)` becomes `f(...)` (running is what a call means without it), and
/// `FINAL f(...)` becomes `__final_f(...)`.
pub fn navigation_semantics(mut tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
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
