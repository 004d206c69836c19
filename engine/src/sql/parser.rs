//! Parses a query file. sqlparser reads queries and INSERTs; this module reads `CREATE SOURCE`,
//! `CREATE SINK`, `WATERMARK FOR` and `WITH (...)` itself (the way DataFusion's `DFParser` adds
//! `CREATE EXTERNAL TABLE`), and accepts Flink's spelling of window calls,
//! `TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), size))`, by dropping its `TABLE` wrappers.

use datafusion::sql::sqlparser::ast::{self as sql, TableObject};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::ast::{
    CreateSink, CreateSource, CreateTable, CreateView, Insert, Select, Statement, WatermarkDecl,
};
use crate::error::{Location, SqlError};
use crate::options::{OptionEntry, Options};

/// Names of the window table functions, whose Flink spelling is rewritten.
pub const WINDOW_FUNCTIONS: [&str; 4] = ["TUMBLE", "HOP", "SESSION", "CUMULATE"];

/// Parses every statement of a query file.
pub fn parse(sql: &str) -> Result<Vec<Statement>, SqlError> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::new(e.location, e.message))?;
    let tokens = unwrap_flink_window_calls(tokens);
    let tokens = partition_by_as_call(tokens);
    let tokens = super::row_pattern::rewrite(tokens);
    let tokens = super::window_frame::rewrite(tokens)?;
    let tokens = move_within_into_define(tokens);
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token_ref().token == Token::EOF {
            break;
        }
        let statement = parse_statement(&mut parser).map_err(|e| from_parser_error(e, sql))?;
        statements.push(statement);
        if parser.peek_token_ref().token != Token::EOF && !parser.consume_token(&Token::SemiColon) {
            let t = parser.peek_token();
            return Err(SqlError::new(
                t.span.start,
                format!("expected ';' after the statement, found {}", t.token),
            ));
        }
    }
    Ok(statements)
}

fn word_is(t: &Token, word: &str) -> bool {
    matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case(word))
}

fn parse_statement(p: &mut Parser) -> Result<Statement, ParserError> {
    let [t0, t1] = p.peek_tokens_with_location::<2>();
    let location = Location::from(t0.span.start);
    if word_is(&t0.token, "CREATE") && word_is(&t1.token, "SOURCE") {
        p.next_token();
        p.next_token();
        return parse_create_source(p, location).map(|s| Statement::CreateSource(Box::new(s)));
    }
    if word_is(&t0.token, "CREATE") && word_is(&t1.token, "SINK") {
        p.next_token();
        p.next_token();
        let name = p.parse_identifier()?;
        let options = parse_with_options(p)?;
        return Ok(Statement::CreateSink(CreateSink {
            name,
            options,
            location,
        }));
    }
    if word_is(&t0.token, "CREATE") && word_is(&t1.token, "TABLE") {
        p.next_token();
        p.next_token();
        let name = p.parse_identifier()?;
        p.expect_token(&Token::LParen)?;
        let mut columns = Vec::new();
        loop {
            columns.push(p.parse_column_def()?);
            if p.consume_token(&Token::Comma) {
                continue;
            }
            p.expect_token(&Token::RParen)?;
            break;
        }
        let options = parse_with_options(p)?;
        return Ok(Statement::CreateTable(Box::new(CreateTable {
            name,
            columns,
            options,
            location,
        })));
    }
    if word_is(&t0.token, "CREATE") && word_is(&t1.token, "VIEW") {
        p.next_token();
        p.next_token();
        let name = p.parse_identifier()?;
        p.expect_keyword_is(Keyword::AS)?;
        let query = p.parse_query()?;
        return Ok(Statement::CreateView(CreateView {
            name,
            query,
            location,
        }));
    }
    match p.parse_statement()? {
        sql::Statement::Query(query) => Ok(Statement::Select(Select { query, location })),
        sql::Statement::Insert(insert) => {
            let sink = match &insert.table {
                TableObject::TableName(name) if name.0.len() == 1 => name.0[0]
                    .as_ident()
                    .cloned()
                    .ok_or_else(|| at(location, "expected a sink name after INSERT INTO"))?,
                other => {
                    return Err(at(
                        location,
                        &format!("expected a sink name after INSERT INTO, found {other}"),
                    ));
                }
            };
            if !insert.columns.is_empty() {
                return Err(at(
                    location,
                    "INSERT INTO a sink takes no column list: the query's column names are the output's keys",
                ));
            }
            let query = insert
                .source
                .ok_or_else(|| at(location, "expected SELECT after INSERT INTO sink"))?;
            Ok(Statement::Insert(Insert {
                sink,
                query,
                location,
            }))
        }
        _ => Err(at(
            location,
            "unsupported statement: a query file holds CREATE SOURCE, CREATE SINK, CREATE TABLE, CREATE VIEW, INSERT INTO ... SELECT and SELECT",
        )),
    }
}

fn at(location: Location, message: &str) -> ParserError {
    ParserError::ParserError(format!(
        "{message} at Line: {}, Column: {}",
        location.line, location.column
    ))
}

/// `name ( column type, ..., WATERMARK FOR col AS expr ) WITH (...)`, after `CREATE SOURCE`.
fn parse_create_source(p: &mut Parser, location: Location) -> Result<CreateSource, ParserError> {
    let name = p.parse_identifier()?;
    p.expect_token(&Token::LParen)?;
    let mut columns = Vec::new();
    let mut watermark = None;
    loop {
        let t = p.peek_token();
        if word_is(&t.token, "WATERMARK") {
            p.next_token();
            p.expect_keyword_is(Keyword::FOR)?;
            let column = p.parse_identifier()?;
            p.expect_keyword_is(Keyword::AS)?;
            let expr = p.parse_expr()?;
            if watermark.is_some() {
                return Err(at(t.span.start.into(), "a source has one WATERMARK"));
            }
            watermark = Some(WatermarkDecl {
                column,
                expr,
                location: t.span.start.into(),
            });
        } else {
            columns.push(p.parse_column_def()?);
        }
        if p.consume_token(&Token::Comma) {
            continue;
        }
        p.expect_token(&Token::RParen)?;
        break;
    }
    let options = parse_with_options(p)?;
    Ok(CreateSource {
        name,
        columns,
        watermark,
        options,
        location,
    })
}

/// `WITH (key = value, ...)`; keys are words (dotted words allowed) or quoted strings as in Flink,
/// values are strings, numbers or words such as `true`.
fn parse_with_options(p: &mut Parser) -> Result<Options, ParserError> {
    let mut entries = Vec::new();
    if !p.parse_keyword(Keyword::WITH) {
        return Ok(Options::default());
    }
    p.expect_token(&Token::LParen)?;
    if p.consume_token(&Token::RParen) {
        return Ok(Options::default());
    }
    loop {
        let kt = p.next_token();
        let mut key = match &kt.token {
            Token::Word(w) => w.value.to_ascii_lowercase(),
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s.to_ascii_lowercase(),
            _ => return p.expected("an option name", kt),
        };
        while p.consume_token(&Token::Period) {
            let t = p.next_token();
            match &t.token {
                Token::Word(w) => {
                    key.push('.');
                    key.push_str(&w.value.to_ascii_lowercase());
                }
                _ => return p.expected("an option name after '.'", t),
            }
        }
        p.expect_token(&Token::Eq)?;
        let vt = p.next_token();
        let value = match &vt.token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s.clone(),
            Token::Number(n, _) => n.clone(),
            Token::Word(w) => w.value.clone(),
            Token::Minus => match p.next_token().token {
                Token::Number(n, _) => format!("-{n}"),
                _ => return p.expected("a number after '-'", vt),
            },
            _ => {
                return p.expected(
                    "an option value (a quoted string, a number or true/false)",
                    vt,
                );
            }
        };
        let entry = OptionEntry {
            key,
            value,
            key_location: kt.span.start.into(),
            value_location: vt.span.start.into(),
        };
        entries.push(entry);
        if p.consume_token(&Token::Comma) {
            continue;
        }
        p.expect_token(&Token::RParen)?;
        break;
    }
    Options::new(entries).map_err(|e| at(e.location, &e.message))
}

/// Turns sqlparser's `"... at Line: L, Column: C"` into a located error with a readable message;
/// errors at the end of input carry no location, so they point just past the last character.
fn from_parser_error(e: ParserError, sql: &str) -> SqlError {
    let text = match e {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
        ParserError::RecursionLimitExceeded => "the statement is nested too deeply".to_string(),
    };
    let (message, location) = match text.rfind(" at Line: ") {
        Some(i) => {
            let loc = &text[i + " at Line: ".len()..];
            let mut parts = loc.split(", Column: ");
            let line = parts.next().and_then(|l| l.trim().parse().ok());
            let column = parts.next().and_then(|c| c.trim().parse().ok());
            match (line, column) {
                (Some(l), Some(c)) => (text[..i].to_string(), Location::new(l, c)),
                _ => (text.clone(), end_of(sql)),
            }
        }
        None => (text.clone(), end_of(sql)),
    };
    SqlError::new(location, readable(&message))
}

fn readable(message: &str) -> String {
    let m = message
        .replace("Expected: ", "expected ")
        .replace(", found: EOF", ", found the end of the file")
        .replace(", found: ", ", found ");
    m.trim().to_string()
}

fn end_of(sql: &str) -> Location {
    let trimmed = sql.trim_end();
    let line = trimmed.lines().count().max(1) as u64;
    let column = trimmed.lines().last().map_or(0, |l| l.chars().count()) as u64 + 1;
    Location::new(line, column)
}

/// The name under which `WITHIN INTERVAL '...'` of a `MATCH_RECOGNIZE` reaches the planner.
pub const WITHIN_SYMBOL: &str = "__within";

/// sqlparser does not know Flink's `PATTERN (...) WITHIN INTERVAL '1' MINUTE`: the `WITHIN ...`
/// tokens are moved into the `DEFINE` list as `__within AS INTERVAL '1' MINUTE,` (keeping their
/// places in the file), and the planner takes that entry back out.
fn move_within_into_define(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let mut moves: Vec<(std::ops::Range<usize>, usize)> = Vec::new();
    // Moves never overlap: a WITHIN before the DEFINE another one moved to is left in place
    // (and sqlparser reports it).
    let mut after = 0;
    for (k, &i) in significant.iter().enumerate() {
        if k < after
            || !word_is(&tokens[i].token, "WITHIN")
            || k == 0
            || tokens[significant[k - 1]].token != Token::RParen
        {
            continue;
        }
        // WITHIN INTERVAL '<n>' <UNIT>, up to DEFINE.
        let Some(define) =
            (k + 1..significant.len()).find(|&d| word_is(&tokens[significant[d]].token, "DEFINE"))
        else {
            continue;
        };
        moves.push((significant[k]..significant[define], significant[define]));
        after = define + 1;
    }
    if moves.is_empty() {
        return tokens;
    }
    let mut out = Vec::with_capacity(tokens.len() + 4 * moves.len());
    let mut i = 0;
    for (within, define) in moves {
        out.extend_from_slice(&tokens[i..within.start]);
        out.extend_from_slice(&tokens[within.end..=define]);
        let at = tokens[within.start].span;
        let token = |t: Token| TokenWithSpan { token: t, span: at };
        out.push(token(Token::Whitespace(
            datafusion::sql::sqlparser::tokenizer::Whitespace::Space,
        )));
        out.push(token(Token::make_word(WITHIN_SYMBOL, None)));
        out.push(token(Token::Whitespace(
            datafusion::sql::sqlparser::tokenizer::Whitespace::Space,
        )));
        out.push(token(Token::make_keyword("AS")));
        // INTERVAL '<n>' <UNIT>: the tokens after WITHIN.
        out.extend_from_slice(&tokens[within.start + 1..within.end]);
        out.push(token(Token::Comma));
        i = define + 1;
    }
    out.extend_from_slice(&tokens[i..]);
    out
}

/// The function the data argument `TABLE src [PARTITION BY k]` of Flink's
/// `SESSION(TABLE src PARTITION BY k, ...)` becomes, so sqlparser reads it: `__partitioned(src, k)`.
/// Flink's sessions are keyed by the PARTITION BY columns alone (all rows, without them).
pub const PARTITIONED_FUNCTION: &str = "__partitioned";

/// Rewrites SESSION's data argument in Flink's spelling, `TABLE src`, `TABLE src PARTITION BY k` or
/// `TABLE src PARTITION BY (k1, k2)`, into `__partitioned(src[, k1, k2])`, which sqlparser reads.
fn partition_by_as_call(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let tok = |k: usize| significant.get(k).map(|&i| &tokens[i].token);
    // (`TABLE`, the source name, the keys, the first token after them), as indices in `tokens`.
    let mut rewrites: Vec<(usize, usize, Vec<usize>, usize)> = Vec::new();
    let mut calls: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut k = 0;
    while k < significant.len() {
        let t = tok(k).unwrap_or(&Token::EOF);
        match t {
            Token::LParen => {
                depth += 1;
                if k > 0 && tok(k - 1).is_some_and(|t| word_is(t, "SESSION")) {
                    calls.push(depth);
                }
            }
            Token::RParen => {
                if calls.last() == Some(&depth) {
                    calls.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ if word_is(t, "TABLE")
                && calls.last() == Some(&depth)
                && matches!(
                    tok(k.wrapping_sub(1)),
                    Some(Token::LParen | Token::Comma | Token::RArrow)
                )
                && matches!(tok(k + 1), Some(Token::Word(_))) =>
            {
                let mut keys = Vec::new();
                let mut end = k + 2;
                if tok(k + 2).is_some_and(|t| word_is(t, "PARTITION"))
                    && tok(k + 3).is_some_and(|t| word_is(t, "BY"))
                {
                    end = k + 4;
                    if tok(end) == Some(&Token::LParen) {
                        end += 1;
                        while let Some(t) = tok(end) {
                            end += 1;
                            match t {
                                Token::RParen => break,
                                Token::Comma => {}
                                _ => keys.push(significant[end - 1]),
                            }
                        }
                    } else if tok(end).is_some() {
                        keys.push(significant[end]);
                        end += 1;
                    }
                }
                rewrites.push((
                    significant[k],
                    significant[k + 1],
                    keys,
                    significant.get(end).copied().unwrap_or(tokens.len()),
                ));
                k = end;
                continue;
            }
            _ => {}
        }
        k += 1;
    }
    if rewrites.is_empty() {
        return tokens;
    }
    let mut out = Vec::with_capacity(tokens.len() + 4 * rewrites.len());
    let mut i = 0;
    for (table, source, keys, end) in rewrites {
        let at = tokens[table].span;
        let token = |t: Token| TokenWithSpan { token: t, span: at };
        out.extend_from_slice(&tokens[i..table]);
        out.push(token(Token::make_word(PARTITIONED_FUNCTION, None)));
        out.push(token(Token::LParen));
        out.push(tokens[source].clone());
        for key in keys {
            out.push(token(Token::Comma));
            out.push(tokens[key].clone());
        }
        out.push(token(Token::RParen));
        i = end;
    }
    out.extend_from_slice(&tokens[i..]);
    out
}

/// Drops the `TABLE` keywords of Flink's window-call spelling so sqlparser reads it:
/// `TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), size))` becomes `TUMBLE(src, DESCRIPTOR(ts), size)`.
fn unwrap_flink_window_calls(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    #[derive(Clone, Copy, PartialEq)]
    enum Paren {
        Plain,
        WindowCall,
        /// SESSION's `TABLE src [PARTITION BY ...]` is left to [`partition_by_as_call`].
        SessionCall,
        DroppedWrapper,
    }
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let tok = |k: usize| significant.get(k).map(|&i| &tokens[i].token);
    let is_window_fn =
        |t: Option<&Token>| t.is_some_and(|t| WINDOW_FUNCTIONS.iter().any(|w| word_is(t, w)));
    let mut drop = vec![false; tokens.len()];
    let mut stack: Vec<Paren> = Vec::new();
    let mut k = 0;
    while k < significant.len() {
        let t = &tokens[significant[k]].token;
        if word_is(t, "TABLE") && tok(k + 1) == Some(&Token::LParen) && is_window_fn(tok(k + 2)) {
            drop[significant[k]] = true;
            drop[significant[k + 1]] = true;
            stack.push(Paren::DroppedWrapper);
            k += 2;
            continue;
        }
        if word_is(t, "TABLE")
            && stack.last() == Some(&Paren::WindowCall)
            && matches!(
                tok(k.wrapping_sub(1)),
                Some(Token::LParen | Token::Comma | Token::RArrow)
            )
            && matches!(tok(k + 1), Some(Token::Word(_)))
        {
            drop[significant[k]] = true;
        } else if *t == Token::LParen {
            let call = k > 0 && is_window_fn(tok(k - 1));
            let session = k > 0 && tok(k - 1).is_some_and(|t| word_is(t, "SESSION"));
            stack.push(if session {
                Paren::SessionCall
            } else if call {
                Paren::WindowCall
            } else {
                Paren::Plain
            });
        } else if *t == Token::RParen && stack.pop() == Some(Paren::DroppedWrapper) {
            drop[significant[k]] = true;
        }
        k += 1;
    }
    tokens
        .into_iter()
        .zip(drop)
        .filter_map(|(t, d)| (!d).then_some(t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_source_with_watermark_and_options() {
        let sql = "CREATE SOURCE readings (\n  device_id TEXT,\n  ts TIMESTAMP,\n  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND\n) WITH (connector = 'mqtt', 'topic' = 'a/+/b', qos = 1, retain = false);";
        let s = parse(sql).unwrap();
        let Statement::CreateSource(src) = &s[0] else {
            panic!("{s:?}")
        };
        assert_eq!(src.name.value, "readings");
        assert_eq!(src.columns.len(), 2);
        let wm = src.watermark.as_ref().unwrap();
        assert_eq!(wm.column.value, "ts");
        assert_eq!(wm.location, Location::new(4, 3));
        assert_eq!(src.options.get("topic"), Some("a/+/b"));
        assert_eq!(src.options.get("qos"), Some("1"));
        assert_eq!(src.options.get("retain"), Some("false"));
        assert_eq!(
            src.options.entry("qos").unwrap().key_location,
            Location::new(5, 48)
        );
    }

    #[test]
    fn flink_window_spelling_is_accepted() {
        let flink = "SELECT * FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(ts), INTERVAL '10' SECOND)) AS t";
        let Statement::Select(s) = &parse(flink).unwrap()[0] else {
            panic!()
        };
        assert_eq!(
            s.query.to_string(),
            "SELECT * FROM TUMBLE(readings, DESCRIPTOR(ts), INTERVAL '10' SECOND) AS t"
        );
        let named = "SELECT * FROM TUMBLE(DATA => TABLE readings, TIMECOL => DESCRIPTOR(ts), SIZE => INTERVAL '1' MINUTE)";
        let Statement::Select(s) = &parse(named).unwrap()[0] else {
            panic!()
        };
        assert_eq!(
            s.query.to_string(),
            "SELECT * FROM TUMBLE(DATA => readings, TIMECOL => DESCRIPTOR(ts), SIZE => INTERVAL '1' MINUTE)"
        );
    }

    #[test]
    fn two_withins_before_one_define_are_an_error_not_a_panic() {
        // Found by the sql_front_end fuzz target.
        let sql =
            "SELECT * FROM t MATCH_RECOGNIZE (ORDER BY ts PATTERN (A) WITHIN INTERVAL '1' MINUTE
                   PATTERN (B) WITHIN INTERVAL '2' MINUTE DEFINE A AS true)";
        assert!(parse(sql).is_err());
        let sql = "SELECT * FROM t MATCH_RECOGNIZE (ORDER BY ts PATTERN (A) WITHIN (x) WITHIN INTERVAL '1' MINUTE DEFINE A AS true)";
        let _ = parse(sql);
    }

    #[test]
    fn errors_point_at_line_and_column() {
        let e = parse("CREATE SINK s WITH (connector 'stdout')").unwrap_err();
        assert_eq!(e.location, Location::new(1, 31));
        assert_eq!(e.message, "expected =, found 'stdout'");
        let e = parse("SELECT a FROM t WHERE\n").unwrap_err();
        assert_eq!(e.location, Location::new(1, 22));
        assert_eq!(
            e.message,
            "expected an expression, found the end of the file"
        );
        let e = parse("DROP TABLE t").unwrap_err();
        assert_eq!(e.location, Location::new(1, 1));
        assert!(
            e.message.starts_with("unsupported statement"),
            "{}",
            e.message
        );
    }

    #[test]
    fn insert_names_its_sink() {
        let s = parse("INSERT INTO alerts SELECT a FROM t; SELECT 1").unwrap();
        let Statement::Insert(i) = &s[0] else {
            panic!()
        };
        assert_eq!(i.sink.value, "alerts");
        assert!(matches!(s[1], Statement::Select(_)));
        let e = parse("INSERT INTO alerts (a) SELECT a FROM t").unwrap_err();
        assert!(e.message.contains("no column list"), "{}", e.message);
    }
}
