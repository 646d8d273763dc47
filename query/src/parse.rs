//! A query's SQL text into a statement, within bounds a hostile reader
//! cannot get past: the text's size and the depth of its expressions.
//!
//! The parser reads a chain of binary operators (`1+1+…`, `a OR b OR …`)
//! in a loop, but what it builds is a tree as deep as the chain is long, and
//! everything after the parser (planning, optimization, evaluation, even
//! dropping the tree) walks it by recursion. A few thousand terms overflow a
//! thread's stack, which aborts the whole process. So the depth is measured
//! right after parsing, on a stack large enough for any tree the size limit
//! allows, and a statement deeper than [`MAX_EXPRESSION_DEPTH`] is refused
//! (and dropped there) before anything else sees it.

use std::ops::ControlFlow;

use datafusion::common::config::Dialect;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{Expr, Visit, Visitor};

use crate::QueryError;

/// How large and how deep a query's SQL may be.
#[derive(Debug, Clone, Copy)]
pub struct SqlBounds {
    /// The longest SQL text.
    pub max_bytes: usize,
    /// How deep expressions may nest (each operator, function call and
    /// subquery is a level), as ClickHouse's `max_ast_depth`; generated
    /// filters that OR together hundreds of terms stay well within 1,000.
    pub max_nesting: usize,
}

impl Default for SqlBounds {
    fn default() -> Self {
        SqlBounds {
            max_bytes: 1 << 20,
            max_nesting: 1000,
        }
    }
}

impl SqlBounds {
    /// The stack of a thread that plans and runs queries: DataFusion walks
    /// an expression by recursion, at up to ~8 KiB a level in a debug build
    /// (32 KiB a level leaves room). Address space only: the pages a thread
    /// never touches cost no memory.
    pub fn thread_stack_bytes(&self) -> usize {
        self.max_nesting.saturating_mul(32 << 10).max(8 << 20)
    }

    /// The stack the parser and the depth check run on: enough to build,
    /// walk and drop the deepest tree `max_bytes` of text can describe (two
    /// bytes a level, `1+1+…`, under 1 KiB of stack a level). Reserved
    /// address space too.
    fn parse_stack_bytes(&self) -> usize {
        self.max_bytes.saturating_mul(1 << 10).max(64 << 20)
    }
}

/// Parses one statement of `sql` as `state` would, refusing text longer and
/// expressions nested deeper than `bounds` allow.
pub(crate) fn statement(
    state: &SessionState,
    sql: &str,
    bounds: SqlBounds,
) -> Result<Statement, QueryError> {
    if sql.len() > bounds.max_bytes {
        return Err(QueryError::BadQuery(format!(
            "the query is {} bytes long, more than the {} bytes a query may be \
             (--query-max-sql-bytes)",
            sql.len(),
            bounds.max_bytes
        )));
    }
    let dialect = state.config().options().sql_parser.dialect;
    stacker::grow(bounds.parse_stack_bytes(), || {
        let statement = parse(state, sql, &dialect)?;
        match depth(&statement, bounds.max_nesting) {
            Ok(()) => Ok(statement),
            Err(e) => {
                // Dropped here, on the large stack: its drop recurses as deep as it nests.
                drop(statement);
                Err(e)
            }
        }
    })
}

fn parse(state: &SessionState, sql: &str, dialect: &Dialect) -> Result<Statement, QueryError> {
    state
        .sql_to_statement(sql, dialect)
        .map_err(|e: DataFusionError| QueryError::BadQuery(e.strip_backtrace()))
}

/// Refuses a statement whose expressions nest deeper than `max`; stops
/// walking as soon as they do.
fn depth(statement: &Statement, max: usize) -> Result<(), QueryError> {
    let mut visitor = DepthVisitor { depth: 0, max };
    let flow = match statement {
        Statement::Statement(s) => s.visit(&mut visitor),
        Statement::Explain(explain) => return depth(&explain.statement, max),
        // Refused later as writes; nothing in them is evaluated.
        Statement::CreateExternalTable(_) | Statement::CopyTo(_) | Statement::Reset(_) => {
            ControlFlow::Continue(())
        }
    };
    match flow {
        ControlFlow::Break(()) => Err(QueryError::BadQuery(format!(
            "expression nested too deeply: more than {max} levels (operators, function \
             calls, subqueries; --query-max-nesting); write long chains of OR as IN (…)"
        ))),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct DepthVisitor {
    depth: usize,
    max: usize,
}

impl Visitor for DepthVisitor {
    type Break = ();

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > self.max {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// Positional `?` placeholders (as ODBC, JDBC and ADBC clients write them)
/// become `$1`, `$2`, … in order, which DataFusion binds.
pub(crate) fn number_placeholders(sql: &str) -> datafusion::error::Result<String> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    if !sql.contains('?') {
        return Ok(sql.to_owned());
    }
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .with_unescape(false)
        .tokenize_with_location()
        .map_err(|e| DataFusionError::Plan(e.to_string()))?;
    // Byte offsets of line starts, to place the tokens' (line, column) spans.
    let mut lines = vec![0];
    lines.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
    let offset = |line: u64, column: u64| {
        let start = lines[(line as usize).saturating_sub(1).min(lines.len() - 1)];
        sql[start..]
            .char_indices()
            .nth((column as usize).saturating_sub(1))
            .map_or(sql.len(), |(i, _)| start + i)
    };
    let (mut out, mut copied, mut n) = (String::with_capacity(sql.len() + 8), 0, 0);
    for token in &tokens {
        if matches!(&token.token, Token::Placeholder(p) if p == "?") {
            let at = offset(token.span.start.line, token.span.start.column);
            n += 1;
            out.push_str(&sql[copied..at]);
            out.push_str(&format!("${n}"));
            copied = at + 1;
        }
    }
    out.push_str(&sql[copied..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    #[test]
    fn question_marks_become_numbered_placeholders() {
        let n = |sql: &str| number_placeholders(sql).expect("tokenizes");
        assert_eq!(n("SELECT 1"), "SELECT 1");
        assert_eq!(
            n("SELECT * FROM t WHERE a = ? AND b > ?"),
            "SELECT * FROM t WHERE a = $1 AND b > $2"
        );
        assert_eq!(
            n("SELECT '?', \"?\" FROM t -- ?\nWHERE x = ?"),
            "SELECT '?', \"?\" FROM t -- ?\nWHERE x = $1"
        );
        assert_eq!(n("SELECT 'é', ? , ?"), "SELECT 'é', $1 , $2");
    }

    fn chain(terms: usize, op: &str) -> String {
        format!("SELECT {}", vec!["1"; terms].join(op))
    }

    const BOUNDS: SqlBounds = SqlBounds {
        max_bytes: 1 << 20,
        max_nesting: 1000,
    };

    #[test]
    fn expressions_nest_up_to_the_limit_and_no_deeper() {
        let state = SessionContext::new().state();
        let statement = |sql: &str| statement(&state, sql, BOUNDS);
        // n terms nest n deep: the leftmost `1` lies under n - 1 operators.
        assert!(statement(&chain(BOUNDS.max_nesting, "+")).is_ok());
        for (sql, what) in [
            (chain(BOUNDS.max_nesting + 1, "+"), "sum"),
            (chain(200_000, " OR "), "OR chain"),
            (chain(BOUNDS.max_bytes / 2 - 8, "+"), "the longest sum"),
            (
                format!("SELECT 1 WHERE {}", vec!["true"; 5000].join(" AND ")),
                "AND chain",
            ),
        ] {
            let error = statement(&sql).expect_err(what).to_string();
            assert!(error.contains("nested too deeply"), "{what}: {error}");
        }
    }

    #[test]
    fn long_text_is_refused_before_parsing() {
        let state = SessionContext::new().state();
        let sql = format!("SELECT '{}'", "x".repeat(BOUNDS.max_bytes));
        let error = statement(&state, &sql, BOUNDS)
            .expect_err("too long")
            .to_string();
        assert!(error.contains("bytes a query may be"), "{error}");
        // A wide query is not a deep one.
        let wide = format!("SELECT {}", vec!["1 + 1"; 20_000].join(", "));
        assert!(statement(&state, &wide, BOUNDS).is_ok());
    }
}
