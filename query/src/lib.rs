//! framelake's query side: SQL over the lake with DataFusion.
//!
//! - [`engine`]: a session per query, scoped to one tenant, read-only and limited.
//! - [`aggregate`]: aggregate views, reduced incrementally by the maintainer.
//! - [`http`]: `POST /api/v1/sql` on the query listener.
//! - [`parse`]: SQL text into a statement, within bounds on its size and nesting.
//! - [`flight`]: Arrow FlightSQL.
//! - [`loki`]: Loki's query API (LogQL) for Grafana's Loki datasource.
//! - [`tempo`]: Tempo's query API for Grafana's Tempo datasource.
//!
//! The views are those of [`framelake_lake::view`]; [`functions`] lists the
//! SQL functions added for them, [`quantiles`] the percentile functions.

pub mod aggregate;
mod bounded;
mod concat;
pub mod engine;
mod error;
pub mod flight;
pub mod functions;
pub mod http;
pub mod loki;
pub mod parse;
pub mod perfetto;
pub mod quantiles;
mod table;
pub mod tempo;
mod yielding;

pub use crate::engine::{Engine, Prepared, QueryLimits, Rows};
pub use crate::error::QueryError;
