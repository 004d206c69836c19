//! Turns DataFusion's planning errors into messages for a query file's author, placed at the name
//! they are about: DataFusion's own span when it has one, else the first matching name in the query.

use std::ops::ControlFlow;

use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::ast::{self as sql, Spanned, visit_expressions, visit_relations};

use super::Planner;
use super::names::normalize;
use crate::error::{Location, SqlError};

/// A planning error of the query `query`, placed in the file.
pub fn locate(
    e: &DataFusionError,
    query: &sql::Query,
    fallback: Location,
    planner: &Planner,
) -> SqlError {
    let span = e
        .diagnostic()
        .and_then(|d| d.span)
        .filter(|s| s.start.line > 0)
        .map(|s| Location::from(s.start));
    let root = e.find_root();
    if let DataFusionError::SchemaError(schema_error, _) = root
        && let SchemaError::FieldNotFound {
            field,
            valid_fields,
        } = schema_error.as_ref()
    {
        let mut names: Vec<&str> = valid_fields.iter().map(|c| c.name.as_str()).collect();
        names.dedup();
        let suggestion = closest(&field.name, &names)
            .map(|s| format!(" (did you mean '{s}'?)"))
            .unwrap_or_default();
        let location = span
            .or_else(|| find_identifier(query, &field.name))
            .unwrap_or(fallback);
        return SqlError::new(
            location,
            format!(
                "unknown column '{}'{suggestion}; columns here: {}",
                field.name,
                names.join(", ")
            ),
        );
    }
    let text = message(root);
    if let Some(rest) = text.strip_prefix("Invalid function '")
        && let Some(name) = rest.split('\'').next()
    {
        let suggestion = text
            .split("Did you mean '")
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .map(|s| format!(" (did you mean '{s}'?)"))
            .unwrap_or_default();
        let location = span
            .or_else(|| find_function(query, name))
            .unwrap_or(fallback);
        return SqlError::new(location, format!("unknown function '{name}'{suggestion}"));
    }
    if let Some(rest) = text.strip_prefix("table '")
        && let Some(qualified) = rest.strip_suffix("' not found")
    {
        let name = qualified.rsplit('.').next().unwrap_or(qualified);
        let location = span
            .or_else(|| find_relation(query, name))
            .unwrap_or(fallback);
        return SqlError::new(
            location,
            format!("unknown source '{name}'; {}", planner.source_names(name)),
        );
    }
    SqlError::new(span.unwrap_or(fallback), text)
}

/// DataFusion's message without its category prefix and backtrace.
pub fn message(e: &DataFusionError) -> String {
    let text = e.find_root().strip_backtrace();
    let mut t = text.as_str();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "This feature is not implemented: ",
        "Execution error: ",
        "Optimizer rule 'type_coercion' failed\ncaused by\n",
        "Arrow error: ",
    ] {
        t = t.strip_prefix(prefix).unwrap_or(t);
    }
    t.trim().to_string()
}

/// The valid name closest to `name` (ignoring case), if it is close enough to be a typo.
pub fn closest<'n>(name: &str, valid: &[&'n str]) -> Option<&'n str> {
    let name = name.to_lowercase();
    valid
        .iter()
        .map(|v| (edit_distance(&name, &v.to_lowercase()), *v))
        .filter(|(d, v)| *d <= 2.max(v.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn find_identifier(query: &sql::Query, name: &str) -> Option<Location> {
    let found = visit_expressions(query, |e| {
        let ident = match e {
            sql::Expr::Identifier(i) => Some(i),
            sql::Expr::CompoundIdentifier(parts) => parts.last(),
            _ => None,
        };
        match ident {
            Some(i) if normalize(i) == name => ControlFlow::Break(Location::from(e.span().start)),
            _ => ControlFlow::Continue(()),
        }
    });
    match found {
        ControlFlow::Break(l) => Some(l),
        ControlFlow::Continue(()) => None,
    }
}

pub(super) fn find_function(query: &sql::Query, name: &str) -> Option<Location> {
    let found = visit_expressions(query, |e| match e {
        sql::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case(name) => {
            ControlFlow::Break(Location::from(f.name.span().start))
        }
        _ => ControlFlow::Continue(()),
    });
    match found {
        ControlFlow::Break(l) => Some(l),
        ControlFlow::Continue(()) => None,
    }
}

fn find_relation(query: &sql::Query, name: &str) -> Option<Location> {
    let found = visit_relations(query, |r| match r.0.last().and_then(|p| p.as_ident()) {
        Some(i) if normalize(i) == name => ControlFlow::Break(Location::from(r.span().start)),
        _ => ControlFlow::Continue(()),
    });
    match found {
        ControlFlow::Break(l) => Some(l),
        ControlFlow::Continue(()) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_column() {
        assert_eq!(closest("tmp", &["device_id", "temp", "ts"]), Some("temp"));
        assert_eq!(closest("humidity", &["device_id", "temp", "ts"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
