//! TraceQL, the query language of Grafana Tempo: the syntax tree of a query
//! and its parser. Parsing checks what Tempo checks before running a query
//! (operand types that can meet, filters that are true or false, regular
//! expressions that compile, quantiles in `[0, 1]`); errors say where, as
//! `parse error at line L, col C: …`. Printing a tree gives its canonical
//! text, which parses back to the same tree.

mod ast;
mod lexer;
mod parser;

pub use crate::ast::*;
pub use crate::parser::{ParseError, anchored, parse, parse_filter, type_of};
