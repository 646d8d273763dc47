//! The fuzz target's body, shared with the stable test that runs it over the
//! seeds (`tests/main.rs`): any text either fails to parse with a position
//! inside the query, or parses to a tree whose canonical text parses back to
//! the same tree. It must return, never panic.

/// Checks one input; returns whether it parsed.
pub(crate) fn check(data: &[u8]) -> bool {
    let Ok(query) = std::str::from_utf8(data) else {
        return false;
    };
    match framelake_traceql::parse(query) {
        Ok(expr) => {
            let canonical = expr.to_string();
            let again = framelake_traceql::parse(&canonical)
                .unwrap_or_else(|e| panic!("{query:?} printed as {canonical:?}, which fails: {e}"));
            assert_eq!(again, expr, "{query:?} printed as {canonical:?}");
            assert_eq!(again.to_string(), canonical, "printing is stable");
            true
        }
        Err(e) => {
            let lines = query.split('\n').count();
            assert!(
                e.line >= 1 && e.line <= lines && e.col >= 1,
                "{query:?}: error outside the query: {e}"
            );
            false
        }
    }
}
