//! LogQL, the query language of Grafana Loki: the syntax tree of a query and
//! its parser. Parsing checks what Loki checks before running a query (regular
//! expressions compile, a selector has a matcher that cannot match the empty
//! string, range aggregations and `unwrap` go together); errors say where, as
//! `parse error at line L, col C: …`. Printing a tree gives its canonical text,
//! which parses back to the same tree.
//!
//! [`eval`] runs a log pipeline line by line (filters, parsers, templates);
//! the query side compiles the rest into plans over the lake's views.

mod ast;
pub mod eval;
mod lexer;
mod parser;
mod units;

pub use crate::ast::*;
pub use crate::parser::{ParseError, parse, parse_labels};
pub use crate::units::{parse_bytes, parse_duration, parse_range};
