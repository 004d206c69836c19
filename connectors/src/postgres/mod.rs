//! PostgreSQL (tokio-postgres): a sink that inserts alerts in batches (an upsert on `alert_id`),
//! and reference tables read from a table or a query and refreshed.

pub mod config;
mod sink;
mod table;

use eddy_engine::ConnectorError;
use tokio_postgres::{Client, NoTls};

pub use sink::PostgresSink;
pub use table::PostgresTable;

/// Connects to `url` under `application_name`; the connection runs in a task of its own until
/// the client is dropped or the server goes away.
async fn connect(url: &str, application_name: &str) -> Result<Client, ConnectorError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| ConnectorError::fatal(format!("not a PostgreSQL URL: {e}")))?;
    config.application_name(application_name);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| ConnectorError::retryable(format!("cannot connect to PostgreSQL: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

/// `name` as a quoted SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
