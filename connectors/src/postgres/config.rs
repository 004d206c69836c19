//! Options of the PostgreSQL connector: every field documented, unknown options refused.

#![deny(missing_docs)]

use serde::Deserialize;

/// `CREATE SINK ... WITH (connector = 'postgres', ...)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// `postgres://user[:password]@host[:port]/database` (libpq's keys after `?`, such as
    /// `connect_timeout`); put the password in the environment with `${VAR}`.
    pub url: String,
    /// The table rows are inserted into (`schema.table` allowed).
    pub table: String,
    /// `true`: the table is created if it does not exist, its columns and types taken from the
    /// rows (an `alert_id` column becomes the primary key).
    #[serde(default)]
    pub create_table: bool,
}

/// `CREATE TABLE ... WITH (connector = 'postgres', ...)`: reference rows read from PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTableConfig {
    /// `postgres://user[:password]@host[:port]/database`.
    pub url: String,
    /// The table read whole (its columns by the declared names).
    pub table: Option<String>,
    /// Or a query whose columns are the declared ones, by name.
    pub query: Option<String>,
}
