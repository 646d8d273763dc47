//! The parser over the query forms Grafana sends and Loki's documentation
//! shows: each parses to the expected tree (its canonical text), and that text
//! parses back to the same tree; errors say where.

use framelake_logql::*;

/// `query` parses, prints as `canonical`, and `canonical` parses to the same tree.
fn golden(query: &str, canonical: &str) {
    let expr = parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    assert_eq!(expr.to_string(), canonical, "canonical text of {query}");
    let again = parse(canonical).unwrap_or_else(|e| panic!("{canonical}: {e}"));
    assert_eq!(again, expr, "{canonical} parses back to the same tree");
}

/// `query` fails at `line`:`col` with a message containing `message`.
fn error(query: &str, line: usize, col: usize, message: &str) {
    let e = parse(query).expect_err(query);
    assert_eq!((e.line, e.col), (line, col), "{query}: {e}");
    assert!(
        e.message.contains(message),
        "{query}: {e} (expected {message:?})"
    );
    assert!(
        e.to_string()
            .starts_with(&format!("parse error at line {line}, col {col}: "))
    );
}

#[test]
fn the_queries_grafana_sends() {
    // Save & test.
    golden("vector(1)+vector(1)", "vector(1) + vector(1)");
    // Explore's log-volume histogram.
    golden(
        r#"sum by (level, detected_level) (count_over_time({service_name="api"} | drop __error__[15s]))"#,
        r#"sum by (level, detected_level) (count_over_time({service_name="api"} | drop __error__ [15s]))"#,
    );
    // Trace to logs, legacy form: backticks, a template, `or` in a label filter.
    golden(
        r#"{service_name="api"} | label_format log_line_contains_trace_id=`{{ contains "abc" __line__  }}` | log_line_contains_trace_id="true" or trace_id="abc""#,
        r#"{service_name="api"} | label_format log_line_contains_trace_id="{{ contains \"abc\" __line__  }}" | log_line_contains_trace_id="true" or trace_id="abc""#,
    );
    // Trace to logs, dynamic form.
    golden(
        r#"{service_name="api"} | logfmt | json | drop __error__ | trace_id="abc" | span_id="def""#,
        r#"{service_name="api"} | logfmt | json | drop __error__ | trace_id="abc" | span_id="def""#,
    );
    golden(
        r#"{service_name="api"} |= "abc""#,
        r#"{service_name="api"} |= "abc""#,
    );
}

#[test]
fn selectors_and_line_filters() {
    golden(
        r#"{app="a", env!="dev", job=~"api|web", ns!~"kube-.*"}"#,
        r#"{app="a", env!="dev", job=~"api|web", ns!~"kube-.*"}"#,
    );
    golden(
        r#"{app="a"} |= "error" != "timeout" |~ "status=5\\d\\d" !~ `(?i)debug` |> "<_> GET <_>" !> "<_> /health""#,
        r#"{app="a"} |= "error" != "timeout" |~ "status=5\\d\\d" !~ "(?i)debug" |> "<_> GET <_>" !> "<_> /health""#,
    );
    golden(
        r#"{app="a"} |= "error" or "fatal" |= "db""#,
        r#"{app="a"} |= "error" or "fatal" |= "db""#,
    );
    golden(r#"({app="a"} |= "x")"#, r#"{app="a"} |= "x""#);
    // Comments and line breaks.
    golden("{app=\"a\"} # the app\n  |= \"x\"", r#"{app="a"} |= "x""#);
}

#[test]
fn parsers_and_formatters() {
    golden(
        r#"{app="a"} | json | json first="servers[0]", ua="request.headers[\"User-Agent\"]", status"#,
        r#"{app="a"} | json | json first="servers[0]", ua="request.headers[\"User-Agent\"]", status"#,
    );
    golden(
        r#"{app="a"} | logfmt --strict --keep-empty | logfmt level, msg="message""#,
        r#"{app="a"} | logfmt --strict --keep-empty | logfmt level, msg="message""#,
    );
    golden(
        r#"{app="a"} | regexp "(?P<method>\\w+) (?P<path>\\S+)" | pattern "<ip> - <_> <status>" | unpack"#,
        r#"{app="a"} | regexp "(?P<method>\\w+) (?P<path>\\S+)" | pattern "<ip> - <_> <status>" | unpack"#,
    );
    golden(
        r#"{app="a"} | line_format "{{.method}} {{ToUpper .path}} {{__timestamp__}}" | label_format dst=src, combined="{{.a}}-{{.b}}""#,
        r#"{app="a"} | line_format "{{.method}} {{ToUpper .path}} {{__timestamp__}}" | label_format dst=src, combined="{{.a}}-{{.b}}""#,
    );
    golden(
        r#"{app="a"} | drop level, method="GET", path=~"/api.*" | keep status | decolorize"#,
        r#"{app="a"} | drop level, method="GET", path=~"/api.*" | keep status | decolorize"#,
    );
}

#[test]
fn label_filters() {
    golden(
        r#"{app="a"} | logfmt | status >= 500 and method="GET""#,
        r#"{app="a"} | logfmt | status>=500 and method="GET""#,
    );
    // `,` and juxtaposition mean `and`; `and` binds tighter than `or`.
    golden(
        r#"{app="a"} | logfmt | duration > 250ms, size <= 20MB or status == 404 level="warn""#,
        r#"{app="a"} | logfmt | duration>250ms and size<=20000000B or status==404 and level="warn""#,
    );
    golden(
        r#"{app="a"} | logfmt | (status = 500 or status = 503) and latency > 1.5s"#,
        r#"{app="a"} | logfmt | (status==500 or status==503) and latency>1s500ms"#,
    );
    golden(
        r#"{app="a"} | json | __error__="" | level=~"warn|error" | user!~"bot.*""#,
        r#"{app="a"} | json | __error__="" | level=~"warn|error" | user!~"bot.*""#,
    );
    let Expr::Log(log) = parse(r#"{app="a"} | logfmt | size > 1KiB"#).expect("parses") else {
        panic!("a log query");
    };
    assert_eq!(
        log.pipeline[1],
        Stage::LabelFilter(LabelFilter::Bytes {
            name: "size".into(),
            op: CmpOp::Gt,
            value: 1024
        })
    );
}

#[test]
fn range_aggregations() {
    for op in [
        "rate",
        "count_over_time",
        "bytes_rate",
        "bytes_over_time",
        "absent_over_time",
    ] {
        golden(
            &format!(r#"{op}({{app="a"}} |= "x" [5m])"#),
            &format!(r#"{op}({{app="a"}} |= "x" [5m])"#),
        );
    }
    for op in [
        "sum_over_time",
        "avg_over_time",
        "max_over_time",
        "min_over_time",
        "first_over_time",
        "last_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "rate",
        "rate_counter",
    ] {
        golden(
            &format!(r#"{op}({{app="a"}} | logfmt | unwrap latency [1m])"#),
            &format!(r#"{op}({{app="a"}} | logfmt | unwrap latency [1m])"#),
        );
    }
    golden(
        r#"quantile_over_time(0.99, {app="a"} | json | unwrap duration(took) | __error__="" [5m]) by (path)"#,
        r#"quantile_over_time(0.99, {app="a"} | json | unwrap duration(took) | __error__="" [5m]) by (path)"#,
    );
    golden(
        r#"avg_over_time({app="a"} | logfmt | unwrap bytes(size) [1h]) without (pod)"#,
        r#"avg_over_time({app="a"} | logfmt | unwrap bytes(size) [1h]) without (pod)"#,
    );
    golden(
        r#"max_over_time({app="a"} | logfmt | unwrap duration_seconds(took) [90s])"#,
        r#"max_over_time({app="a"} | logfmt | unwrap duration(took) [1m30s])"#,
    );
    // The range before the pipeline, an offset, parentheses around the log query.
    golden(
        r#"count_over_time({app="a"}[5m] offset 1h |= "x")"#,
        r#"count_over_time({app="a"} |= "x" [5m] offset 1h)"#,
    );
    golden(
        r#"count_over_time(({app="a"} |= "x")[1d])"#,
        r#"count_over_time({app="a"} |= "x" [24h])"#,
    );
}

#[test]
fn vector_aggregations_and_operators() {
    golden(
        r#"sum(rate({app="a"}[1m])) by (host)"#,
        r#"sum by (host) (rate({app="a"} [1m]))"#,
    );
    golden(
        r#"topk(5, sum by (path) (count_over_time({app="a"}[5m])))"#,
        r#"topk(5, sum by (path) (count_over_time({app="a"} [5m])))"#,
    );
    golden(
        r#"bottomk by (ns) (2, count_over_time({app="a"}[5m]))"#,
        r#"bottomk by (ns) (2, count_over_time({app="a"} [5m]))"#,
    );
    for op in [
        "avg",
        "min",
        "max",
        "count",
        "stddev",
        "stdvar",
        "sort",
        "sort_desc",
    ] {
        golden(
            &format!(r#"{op}(count_over_time({{app="a"}}[5m]))"#),
            &format!(r#"{op}(count_over_time({{app="a"}} [5m]))"#),
        );
    }
    // Precedence: `*` over `+` over comparisons over `and` over `or`; `^` right-associative.
    // Printed with the parentheses the reading needs only.
    let same = |query: &str, grouped: &str| {
        assert_eq!(parse(query), parse(grouped), "{query} reads as {grouped}");
        golden(query, query);
    };
    same(
        r#"1 + 2 * 3 > bool 4 and vector(1) or vector(0)"#,
        r#"(((1 + (2 * 3)) > bool 4) and vector(1)) or vector(0)"#,
    );
    same("2 ^ 3 ^ 2", "2 ^ (3 ^ 2)");
    same("10 - 2 - 3", "(10 - 2) - 3");
    golden("(2 ^ 3) ^ 2", "(2 ^ 3) ^ 2");
    golden("10 - (2 - 3)", "10 - (2 - 3)");
    golden("(1 + 2) * 3", "(1 + 2) * 3");
    golden("-1 * -vector(2)", "(-1) * ((-1) * vector(2))");
    golden(
        r#"sum by (a) (rate({app="a"}[1m])) / on (a) group_left (b) sum by (a, b) (rate({app="b"}[1m]))"#,
        r#"sum by (a) (rate({app="a"} [1m])) / on (a) group_left (b) sum by (a, b) (rate({app="b"} [1m]))"#,
    );
    golden(
        r#"rate({app="a"}[1m]) unless ignoring (x) rate({app="b"}[1m])"#,
        r#"rate({app="a"} [1m]) unless ignoring (x) rate({app="b"} [1m])"#,
    );
    golden(
        r#"label_replace(rate({app="a"}[1m]), "dst", "$1", "src", "(.*)")"#,
        r#"label_replace(rate({app="a"} [1m]), "dst", "$1", "src", "(.*)")"#,
    );
}

#[test]
fn errors_say_where() {
    error(r#"{app="a"} |= "x" |"#, 1, 19, "unexpected end of query");
    error(
        r#"{app=~".*"}"#,
        1,
        1,
        "at least one regexp or equality matcher",
    );
    error(r#"{app=""}"#, 1, 1, "empty-compatible");
    error(r#"{app=~"(("}"#, 1, 7, "invalid regular expression");
    error(r#"{app="a"} |~ "(""#, 1, 14, "invalid regular expression");
    error(
        "{app=\"a\"}\n  | nonsense",
        2,
        5,
        "unexpected identifier \"nonsense\"",
    );
    error(r#"sum_over_time({app="a"}[5m])"#, 1, 1, "without unwrap");
    error(
        r#"count_over_time({app="a"} | logfmt | unwrap x [5m])"#,
        1,
        1,
        "with unwrap",
    );
    error(
        r#"count_over_time({app="a"}[5m]) by (x)"#,
        1,
        1,
        "grouping not allowed",
    );
    error(r#"rate({app="a"}[5x])"#, 1, 16, "invalid range");
    error(r#"rate({app="a"})"#, 1, 15, "expected \"[\"");
    error(
        r#"topk(0, rate({app="a"}[1m]))"#,
        1,
        6,
        "not a positive integer",
    );
    error(
        r#"quantile_over_time(2, {app="a"} | unwrap x [1m])"#,
        1,
        20,
        "invalid quantile",
    );
    error(r#"{app="a"} | regexp "(\\w+)""#, 1, 20, "named capture");
    error(
        r#"{app="a"} | pattern "<_> x""#,
        1,
        21,
        "capture is required",
    );
    error(r#"{app="a"} + 1"#, 1, 11, "log query cannot be an operand");
    error(r#"sum({app="a"})"#, 1, 5, "expected a metric expression");
    error(
        r#"{app="a"} | unwrap x"#,
        1,
        11,
        "only allowed in a range aggregation",
    );
    error(r#"1 + 1 bool 2"#, 1, 7, "unexpected identifier \"bool\"");
    error(
        r#"{app="a"} |= "unterminated"#,
        1,
        14,
        "unterminated string",
    );
    error(
        r#"{app="a"} | logfmt | status > "x""#,
        1,
        29,
        "cannot compare with a string",
    );
}

#[test]
fn pattern_captures() {
    error(
        r#"{app="a"} |> "<_> <method> x""#,
        1,
        14,
        "only <_> captures",
    );
    golden(
        r#"{app="a"} |> "<_> a<b <_>""#,
        r#"{app="a"} |> "<_> a<b <_>""#,
    );
    error(
        r#"{app="a"} | pattern "<_> <> x""#,
        1,
        21,
        "capture is required",
    );
}

#[path = "../fuzz/parse.rs"]
mod body;

/// The fuzz target's body over its seeds, each cut at every character and
/// with each character replaced by a space: every seed parses, and no cut or
/// change panics or prints a tree that parses differently.
#[test]
fn fuzz_body_over_the_seeds_and_their_cuts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse");
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .expect("seeds")
        .map(|e| e.expect("entry").path())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "seeds in {}", dir.display());
    for seed in seeds {
        let query = std::fs::read_to_string(&seed).expect("seed");
        assert!(body::check(query.as_bytes()), "{} parses", seed.display());
        for (i, _) in query.char_indices() {
            body::check(&query.as_bytes()[..i]);
            let mut changed = query.clone();
            changed.replace_range(
                i..i + query[i..].chars().next().map_or(1, char::len_utf8),
                " ",
            );
            body::check(changed.as_bytes());
        }
    }
}

#[test]
fn push_label_sets() {
    assert_eq!(
        parse_labels(r#"{a="b", c="d \"q\""}"#).expect("parses"),
        vec![("a".into(), "b".into()), ("c".into(), "d \"q\"".into())]
    );
    assert_eq!(parse_labels("{}").expect("parses"), vec![]);
    for (bad, col) in [
        (r#"{a="b""#, 7),
        (r#"a="b""#, 1),
        (r#"{a=b}"#, 4),
        (r#"{a="b", a="c"}"#, 9),
        (r#"{a="b"} x"#, 9),
    ] {
        let e = parse_labels(bad).expect_err(bad);
        assert_eq!(e.col, col, "{bad}: {e}");
    }
}

/// Nesting deeper than the parser follows is refused with a position, not
/// followed down the stack; a tree that is not too deep prints as text that
/// parses back.
#[test]
fn deep_nesting_is_refused() {
    for deep in [
        format!("{}vector(1){}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("{}vector(1)", "-".repeat(100_000)),
        format!(
            "{{a=\"b\"}} | {}x=\"1\"{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        ),
        format!("vector(1){}", " ^ vector(1)".repeat(100_000)),
    ] {
        let e = parse(&deep).expect_err("too deep");
        assert!(e.message.contains("nests deeper than 1024 levels"), "{e}");
    }
    // Chains read without nesting, up to a tree of 256 operations.
    let chains = |n: usize| {
        [
            format!("vector(1){}", " + vector(1)".repeat(n)),
            format!("{{a=\"b\"}} | x=\"1\"{}", " or x=\"1\"".repeat(n)),
        ]
    };
    for chain in chains(250) {
        let expr = parse(&chain).expect("parses");
        assert_eq!(parse(&expr.to_string()).expect("reparses"), expr);
    }
    for chain in chains(256) {
        let e = parse(&chain).expect_err("too long a chain");
        assert!(e.message.contains("more than 256 operations"), "{e}");
    }
}
