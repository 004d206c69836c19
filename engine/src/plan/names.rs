//! Names and places in the SQL text: how an identifier resolves, and where a node starts.

use datafusion::sql::sqlparser::ast::{self as sql, Spanned};

use crate::error::Location;

/// The name of an identifier as SQL resolves it: unquoted names are case-insensitive.
pub fn normalize(ident: &sql::Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// Where `node` starts in the query file.
pub fn location_of(node: &impl Spanned) -> Location {
    node.span().start.into()
}
