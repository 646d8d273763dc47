//! The parser over the query forms Grafana sends and Tempo's documentation
//! shows: each parses to the expected tree (its canonical text), and that text
//! parses back to the same tree; errors say where.

use framelake_traceql::*;

#[path = "../fuzz/parse.rs"]
mod fuzz;

/// `query` parses, prints as `canonical`, and `canonical` parses to the same tree.
fn golden(query: &str, canonical: &str) -> Query {
    let parsed = parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    assert_eq!(parsed.to_string(), canonical, "canonical text of {query}");
    let again = parse(canonical).unwrap_or_else(|e| panic!("{canonical}: {e}"));
    assert_eq!(again, parsed, "{canonical} parses back to the same tree");
    parsed
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

fn attr(scope: Scope, name: &str) -> Expr {
    Expr::Field(Field::Attribute(scope, name.to_owned()))
}

fn intrinsic(i: Intrinsic) -> Expr {
    Expr::Field(Field::Intrinsic(i))
}

fn bin(op: BinaryOp, l: Expr, r: Expr) -> Expr {
    Expr::Binary(op, Box::new(l), Box::new(r))
}

fn lit(s: Static) -> Expr {
    Expr::Static(s)
}

fn search(query: &str) -> Spanset {
    match parse(query).unwrap_or_else(|e| panic!("{query}: {e}")).body {
        Body::Search(s) => s,
        Body::Metrics(m) => panic!("{query}: a metrics query {m}"),
    }
}

fn filter(query: &str) -> Expr {
    match search(query) {
        Spanset::Filter(e) => e,
        other => panic!("{query}: not a filter: {other:?}"),
    }
}

#[test]
fn the_queries_grafana_sends() {
    // Save & test's streaming probe, the search page's default.
    golden("{}", "{ }");
    // The Search builder.
    let q = golden(
        r#"{resource.service.name="frontend" && name="GET /api" && status=error && duration>100ms}"#,
        r#"{ resource.service.name = "frontend" && name = "GET /api" && status = error && duration > 100ms }"#,
    );
    assert_eq!(
        q.body,
        Body::Search(Spanset::Filter(bin(
            BinaryOp::And,
            bin(
                BinaryOp::And,
                bin(
                    BinaryOp::And,
                    bin(
                        BinaryOp::Eq,
                        attr(Scope::Resource, "service.name"),
                        lit(Static::Str("frontend".into()))
                    ),
                    bin(
                        BinaryOp::Eq,
                        intrinsic(Intrinsic::Name),
                        lit(Static::Str("GET /api".into()))
                    ),
                ),
                bin(
                    BinaryOp::Eq,
                    intrinsic(Intrinsic::Status),
                    lit(Static::Status(Status::Error))
                ),
            ),
            bin(
                BinaryOp::Gt,
                intrinsic(Intrinsic::Duration),
                lit(Static::Duration(100_000_000))
            ),
        )))
    );
    // Tag values narrowed by a filter.
    assert_eq!(
        parse_filter(r#"{span.http.method="GET"}"#).expect("a filter"),
        bin(
            BinaryOp::Eq,
            attr(Scope::Span, "http.method"),
            lit(Static::Str("GET".into()))
        )
    );
    // Traces Drilldown.
    golden(
        "{nestedSetParent<0 && true} | rate() by(resource.service.name)",
        "{ nestedSetParent < 0 && true } | rate() by (resource.service.name)",
    );
    golden(
        "{} | histogram_over_time(duration) with(sample=true)",
        "{ } | histogram_over_time(duration) with (sample=true)",
    );
    golden(
        "{} | quantile_over_time(duration, 0.9, 0.99) by(span.http.route)",
        "{ } | quantile_over_time(duration, 0.9, 0.99) by (span.http.route)",
    );
    golden(
        r#"{resource.service.name="a"} | compare({status=error})"#,
        r#"{ resource.service.name = "a" } | compare({ status = error }, 10)"#,
    );
    golden(
        "{status=error} | select(span.http.url, resource.k8s.pod.name)",
        "{ status = error } | select(span.http.url, resource.k8s.pod.name)",
    );
}

#[test]
fn attributes_and_intrinsics() {
    assert_eq!(filter("{ .a }"), attr(Scope::Any, "a"));
    assert_eq!(filter("{ span.a.b }"), attr(Scope::Span, "a.b"));
    assert_eq!(
        filter("{ resource.span.foo }"),
        attr(Scope::Resource, "span.foo")
    );
    assert_eq!(
        filter("{ event.exception.type }"),
        attr(Scope::Event, "exception.type")
    );
    assert_eq!(filter("{ link.x }"), attr(Scope::Link, "x"));
    assert_eq!(
        filter("{ instrumentation.x }"),
        attr(Scope::Instrumentation, "x")
    );
    // Names run to whitespace or an operator; quoted parts hold anything.
    assert_eq!(filter("{ .foo-bar:baz }"), attr(Scope::Any, "foo-bar:baz"));
    assert_eq!(
        filter(r#"{ span."attribute name with space" = "v" }"#),
        bin(
            BinaryOp::Eq,
            attr(Scope::Span, "attribute name with space"),
            lit(Static::Str("v".into()))
        )
    );
    assert_eq!(
        filter(r#"{ .foo."bar \" baz".qux }"#),
        attr(Scope::Any, "foo.bar \" baz.qux")
    );
    golden(r#"{ ."a b" }"#, r#"{ ."a b" }"#);
    golden(r#"{ span."3x" }"#, r#"{ span."3x" }"#);
    // A keyword is a plain name after a scope.
    assert_eq!(filter("{ .status }"), attr(Scope::Any, "status"));
    assert_eq!(
        filter("{ span.duration > 1 }").to_string(),
        "span.duration > 1"
    );
    // Every intrinsic, scoped or not.
    for (text, i) in [
        ("name", Intrinsic::Name),
        ("span:name", Intrinsic::Name),
        ("status", Intrinsic::Status),
        ("span:status", Intrinsic::Status),
        ("statusMessage", Intrinsic::StatusMessage),
        ("span:statusMessage", Intrinsic::StatusMessage),
        ("duration", Intrinsic::Duration),
        ("span:duration", Intrinsic::Duration),
        ("kind", Intrinsic::Kind),
        ("span:kind", Intrinsic::Kind),
        ("span:id", Intrinsic::SpanId),
        ("span:parentID", Intrinsic::ParentId),
        ("span:childCount", Intrinsic::ChildCount),
        ("childCount", Intrinsic::ChildCount),
        ("trace:id", Intrinsic::TraceId),
        ("traceDuration", Intrinsic::TraceDuration),
        ("trace:duration", Intrinsic::TraceDuration),
        ("rootName", Intrinsic::RootName),
        ("trace:rootName", Intrinsic::RootName),
        ("rootServiceName", Intrinsic::RootServiceName),
        ("trace:rootService", Intrinsic::RootServiceName),
        ("event:name", Intrinsic::EventName),
        ("event:timeSinceStart", Intrinsic::EventTimeSinceStart),
        ("link:traceID", Intrinsic::LinkTraceId),
        ("link:spanID", Intrinsic::LinkSpanId),
        ("instrumentation:name", Intrinsic::InstrumentationName),
        ("instrumentation:version", Intrinsic::InstrumentationVersion),
        ("nestedSetLeft", Intrinsic::NestedSetLeft),
        ("nestedSetRight", Intrinsic::NestedSetRight),
        ("nestedSetParent", Intrinsic::NestedSetParent),
    ] {
        let q = format!("{{ {text} != nil }}");
        assert_eq!(filter(&q), Expr::Exists(Box::new(intrinsic(i))), "{text}");
        let canonical = format!("{{ {} != nil }}", i.name());
        golden(&q, &canonical);
    }
}

#[test]
fn literals() {
    for (text, value) in [
        (r#""a\"b\n\u00e9""#, Static::Str("a\"b\né".into())),
        ("`raw \\n`", Static::Str("raw \\n".into())),
        ("42", Static::Int(42)),
        ("-42", Static::Int(-42)),
        ("1.5", Static::Float(1.5)),
        (".5", Static::Float(0.5)),
        ("1e3", Static::Float(1000.0)),
        ("-2.5", Static::Float(-2.5)),
        ("100ms", Static::Duration(100_000_000)),
        ("1h30m", Static::Duration(5_400_000_000_000)),
        ("1.5s", Static::Duration(1_500_000_000)),
        ("250us", Static::Duration(250_000)),
        ("2d", Static::Duration(172_800_000_000_000)),
        ("-5s", Static::Duration(-5_000_000_000)),
        ("true", Static::Bool(true)),
        ("ok", Static::Status(Status::Ok)),
        ("unset", Static::Status(Status::Unset)),
        ("server", Static::Kind(Kind::Server)),
        ("consumer", Static::Kind(Kind::Consumer)),
        ("minInt", Static::Int(i64::MIN)),
        ("maxInt", Static::Int(i64::MAX)),
    ] {
        let q = format!("{{ .a = {text} }}");
        assert_eq!(
            filter(&q),
            bin(BinaryOp::Eq, attr(Scope::Any, "a"), lit(value)),
            "{text}"
        );
        let printed = parse(&q).expect("parses").to_string();
        assert_eq!(
            parse(&printed).expect("reparses"),
            parse(&q).expect("parses")
        );
    }
    // Comments are skipped.
    assert_eq!(
        filter("{ .a /* the a */ = 1 // one\n }"),
        bin(BinaryOp::Eq, attr(Scope::Any, "a"), lit(Static::Int(1)))
    );
}

#[test]
fn precedence_follows_tempo() {
    // Printed with the parentheses the reading needs only.
    let same = |query: &str, grouped: &str| {
        assert_eq!(parse(query), parse(grouped), "{query} reads as {grouped}");
        golden(query, query);
    };
    // `&&` and `||` bind alike, left to right.
    same("{ .a || .b && .c }", "{ (.a || .b) && .c }");
    golden("{ .a || (.b && .c) }", "{ .a || (.b && .c) }");
    same("{ .a && .b = .c }", "{ .a && (.b = .c) }");
    same("{ .a = .b || .c = .d }", "{ (.a = .b) || (.c = .d) }");
    golden("{ .c - -.a + .b }", "{ .c - (-.a) + .b }");
    assert_eq!(parse("{ .c - -.a + .b }"), parse("{ (.c - (-.a)) + .b }"));
    same(
        "{ .a + .b ^ .c ^ .d = 1 }",
        "{ (.a + (.b ^ (.c ^ .d))) = 1 }",
    );
    golden("{ (.a ^ .b) ^ .c = 1 }", "{ (.a ^ .b) ^ .c = 1 }");
    same("{ -.a * .b = 1 }", "{ (-(.a * .b)) = 1 }");
    golden("{ (-.a) * .b = 1 }", "{ (-.a) * .b = 1 }");
    golden("{ - - -.a = 1 }", "{ ---.a = 1 }");
    same("{ !.a = .b }", "{ (!.a) = .b }");
    same("{ .a = !.b && .c }", "{ (.a = (!.b)) && .c }");
    golden("{ !(.a = .b) }", "{ !(.a = .b) }");
    same(
        "{ span.http.request_content_length > 10 * 1024 * 1024 }",
        "{ span.http.request_content_length > ((10 * 1024) * 1024) }",
    );
    // `= nil`, `!= nil`.
    assert_eq!(
        filter("{ span.x = nil }"),
        Expr::Missing(Box::new(attr(Scope::Span, "x")))
    );
    golden("{ nil != .x && .y }", "{ .x != nil && .y }");
    golden("{ .a + .b = nil }", "{ .a + .b = nil }");
    golden("{ (.a = .b) = nil }", "{ (.a = .b) = nil }");
    // Spanset operators: `&&`/`||` alike and below the structural ones.
    golden("{ .a } && { .b } >> { .c }", "{ .a } && { .b } >> { .c }");
    golden("{ .a } >> { .b } && { .c }", "{ .a } >> { .b } && { .c }");
    golden("{ .a } >> ({ .b } ~ { .c })", "{ .a } >> ({ .b } ~ { .c })");
    golden("{ .a } || { .b } && { .c }", "{ .a } || { .b } && { .c }");
    let s = search("{ .a } && { .b } >> { .c }");
    let Spanset::Binary(SpansetOp::And, _, rhs) = s else {
        panic!("&& at the top: {s:?}")
    };
    assert!(matches!(*rhs, Spanset::Binary(SpansetOp::Descendant, ..)));
}

#[test]
fn spanset_operators_and_pipelines() {
    for (op, sym) in [
        (SpansetOp::And, "&&"),
        (SpansetOp::Or, "||"),
        (SpansetOp::Child, ">"),
        (SpansetOp::Parent, "<"),
        (SpansetOp::Descendant, ">>"),
        (SpansetOp::Ancestor, "<<"),
        (SpansetOp::Sibling, "~"),
        (SpansetOp::NotChild, "!>"),
        (SpansetOp::NotParent, "!<"),
        (SpansetOp::NotDescendant, "!>>"),
        (SpansetOp::NotAncestor, "!<<"),
        (SpansetOp::NotSibling, "!~"),
        (SpansetOp::UnionChild, "&>"),
        (SpansetOp::UnionParent, "&<"),
        (SpansetOp::UnionDescendant, "&>>"),
        (SpansetOp::UnionAncestor, "&<<"),
        (SpansetOp::UnionSibling, "&~"),
    ] {
        let q = format!(r#"{{name="a"}} {sym} {{name="b"}}"#);
        let s = search(&q);
        assert!(matches!(s, Spanset::Binary(o, ..) if o == op), "{q}: {s:?}");
        golden(&q, &format!(r#"{{ name = "a" }} {sym} {{ name = "b" }}"#));
    }
    golden(
        "{ span.http.status_code >= 200 && span.http.status_code < 300 } | count() > 2",
        "{ span.http.status_code >= 200 && span.http.status_code < 300 } | count() > 2",
    );
    golden(
        "{ status = error } | by(resource.service.name) | count() > 1",
        "{ status = error } | by(resource.service.name) | count() > 1",
    );
    golden(
        "{ .a } | by(.namespace) | coalesce() | avg(duration) = 1s",
        "{ .a } | by(.namespace) | coalesce() | avg(duration) = 1s",
    );
    golden("count() = 1 | { true }", "count() = 1 | { }");
    golden(
        "max(duration) > 3s | { status = error || .http.status = 500 }",
        "max(duration) > 3s | { status = error || .http.status = 500 }",
    );
    golden(
        "({ true } | count() > 1 | { false }) >> ({ true } | count() > 1 | { false })",
        "({ } | count() > 1 | { false }) >> ({ } | count() > 1 | { false })",
    );
    golden(
        "{ } !< { resource.service.name = \"productcatalogservice\" }",
        "{ } !< { resource.service.name = \"productcatalogservice\" }",
    );
    golden(
        "{ true } | by(3 * .field - 2) | max(duration) < 1s",
        "{ } | by(3 * .field - 2) | max(duration) < 1s",
    );
    golden("({ .a } | { .b }) | { .c }", "{ .a } | { .b } | { .c }");
    golden("{ .a } | sum(.x) >= -2.5", "{ .a } | sum(.x) >= -2.5");
    golden("{} with (most_recent=true)", "{ } with (most_recent=true)");
    golden(
        r#"{} with (a=1, b="x") with (a=2)"#,
        r#"{ } with (b="x", a=2)"#,
    );
}

#[test]
fn metrics_queries() {
    let q = golden(
        "{ status = error } | rate() by (resource.service.name, name)",
        "{ status = error } | rate() by (resource.service.name, name)",
    );
    let Body::Metrics(m) = q.body else {
        panic!("a metrics query")
    };
    assert_eq!(m.function, Function::Rate);
    assert_eq!(
        m.by,
        vec![
            Field::Attribute(Scope::Resource, "service.name".into()),
            Field::Intrinsic(Intrinsic::Name)
        ]
    );
    golden("{} | count_over_time()", "{ } | count_over_time()");
    for f in ["min", "max", "sum", "avg"] {
        golden(
            &format!("{{}} | {f}_over_time(duration) by(name)"),
            &format!("{{ }} | {f}_over_time(duration) by (name)"),
        );
    }
    golden(
        "{ } | quantile_over_time(duration, 0, 0.90, 0.95, 1) by(name, span.http.status_code)",
        "{ } | quantile_over_time(duration, 0.0, 0.9, 0.95, 1.0) by (name, span.http.status_code)",
    );
    golden(
        r#"{ name = "GET /:endpoint" } | quantile_over_time(duration, .99, .9, .5)"#,
        r#"{ name = "GET /:endpoint" } | quantile_over_time(duration, 0.99, 0.9, 0.5)"#,
    );
    golden(
        "{} | histogram_over_time(duration) by (span.foo)",
        "{ } | histogram_over_time(duration) by (span.foo)",
    );
    golden(
        "{} | compare({status=error}, 5, 1700000000000000000, 1700000060000000000)",
        "{ } | compare({ status = error }, 5, 1700000000000000000, 1700000060000000000)",
    );
    golden(
        "{ } | rate() by(resource.service.name) | topk(5)",
        "{ } | rate() by (resource.service.name) | topk(5)",
    );
    golden(
        r#"{ } | rate() | bottomk(10) with(foo="bar")"#,
        r#"{ } | rate() | bottomk(10) with (foo="bar")"#,
    );
    golden("{ } | rate() > 10", "{ } | rate() > 10.0");
    golden("{ } | rate() > 10s", "{ } | rate() > 10.0");
    golden(
        "{ } | rate() > -2.5 | topk(5)",
        "{ } | rate() > -2.5 | topk(5)",
    );
    golden(
        "{ .a } | count() > 1 | count_over_time() by (name) with(sample=0.1)",
        "{ .a } | count() > 1 | count_over_time() by (name) with (sample=0.1)",
    );
}

#[test]
fn errors_say_where() {
    error("", 1, 1, "unexpected end of query, expected { or (");
    error("{ .a } | { .b", 1, 14, "unexpected end of query");
    error("{ .a | .b }", 1, 6, "unexpected |");
    error(
        "({ .a } | { .b }",
        1,
        17,
        "unexpected end of query, expected )",
    );
    error("{ true } &&", 1, 12, "expected { or (");
    error("{} > 10", 1, 6, "unexpected number 10, expected { or (");
    error("{} = 10", 1, 4, "unexpected =, expected end of query");
    error("by()", 1, 4, "unexpected ), expected a value");
    error("select()", 1, 8, "expected an attribute or an intrinsic");
    error("coalesce()", 1, 1, "coalesce() cannot start a pipeline");
    error("count(", 1, 7, "unexpected end of query, expected )");
    error(
        "count(.thing)",
        1,
        7,
        "unexpected attribute .thing, expected )",
    );
    error(
        "{ true } | count()",
        1,
        19,
        "expected a comparison after the aggregate",
    );
    error("wharblgarbl", 1, 1, "expected { or (");
    error("{ 2 <> 3}", 1, 6, "unexpected >");
    error("{ + }", 1, 3, "unexpected +");
    error("{ . foo }", 1, 4, "an attribute needs a name");
    error(
        "{ .foo .bar }",
        1,
        8,
        "unexpected attribute .bar, expected }",
    );
    error(
        "{ parent.a != 3 }",
        1,
        3,
        "parent. attributes are not supported",
    );
    error("{ span. }", 1, 8, "an attribute needs a name");
    error(r#"{ ."foo }"#, 1, 10, "unterminated quoted attribute name");
    error("{ trace:name = 1 }", 1, 3, "unknown intrinsic trace:name");
    error("{ .a = \"x }", 1, 12, "unterminated string");
    error(r#"{ .a = "\q" }"#, 1, 9, "invalid escape \\q");
    error("{ .a = 99999999999999999999 }", 1, 8, "invalid number");
    error("{} | topk(10)", 1, 6, "unexpected topk, expected { or (");
    error(
        "{} | rate() | topk(-1)",
        1,
        20,
        "unexpected -, expected a whole number",
    );
    error(
        "{} | rate() | topk(0)",
        1,
        15,
        "k must be a positive whole number",
    );
    error("rate()", 1, 1, "rate() needs spans before it");
    error(
        "({} | rate())",
        1,
        7,
        "a metrics function must end the query",
    );
    error(
        "{} | rate() | { .a }",
        1,
        15,
        "unexpected {, expected topk or bottomk",
    );
    error(
        "{ status = error } | rate() by (a)",
        1,
        33,
        "expected an attribute or an intrinsic",
    );
    // What Tempo checks before running a query.
    error("{ 1.1 }", 1, 3, "must resolve to a boolean");
    error(r#"{ "foo" }"#, 1, 3, "must resolve to a boolean");
    error("{ status }", 1, 3, "must resolve to a boolean");
    error(r#"{ 1 = "foo" }"#, 1, 5, "must operate on the same type");
    error(
        "{ status > ok }",
        1,
        10,
        "illegal operation for the given types",
    );
    error("{ kind < consumer }", 1, 8, "illegal operation");
    error(r#"{ traceDuration > "test" }"#, 1, 17, "illegal operation");
    error(r#"{ span.foo =~ "[" }"#, 1, 12, "invalid regex");
    error("{ .a =~ 1 }", 1, 6, "must be a string");
    error("{ -true }", 1, 3, "- needs a number");
    error("{ !1 = 1 }", 1, 3, "! needs a boolean");
    error("{ 1 && true }", 1, 5, "illegal operation");
    error("{ true } | by(1)", 1, 12, "must refer to the span");
    error("{ true } | sum(3) = 2", 1, 15, "must refer to the span");
    error(
        r#"{ true } | avg(name) > 1"#,
        1,
        15,
        "must resolve to a number",
    );
    error(
        "{} | quantile_over_time(duration, 1.5)",
        1,
        35,
        "quantile must be between 0 and 1: 1.5",
    );
    error(
        "{} | rate() by (name, kind, status, .a, .b, .c)",
        1,
        13,
        "groups by at most 5 fields",
    );
    error(
        "{} | compare({status=error}, 0)",
        1,
        30,
        "top number of values must be integer greater than 0",
    );
    error("{ .a = 1 }\n| { .b", 2, 7, "unexpected end of query");
    // Nesting deeper than the parser follows is refused, not a crash.
    for deep in [
        format!("{}{{ .a }}{}", "(".repeat(100_000), ")".repeat(100_000)),
        format!("{{ {}.a }}", "-".repeat(100_000)),
        format!("{{ .a{} }}", " ^ .a".repeat(100_000)),
    ] {
        let e = parse(&deep).expect_err("too deep");
        assert!(e.message.contains("nests deeper than 1024 levels"), "{e}");
    }
    // Chains read without nesting, up to a tree of 256 operations.
    let long = format!("{{ .a{} = 1 }}", " + .a".repeat(250));
    golden(&long, &long);
    let long = format!("{{ .a{} = 1 }}", " + .a".repeat(256));
    let e = parse(&long).expect_err("too long");
    assert!(e.message.contains("more than 256 operations"), "{e}");
}

/// The fuzz target's body over its seeds, and over every query above.
#[test]
fn fuzz_seeds_parse_back_or_fail_with_a_position() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse");
    let mut parsed = 0;
    for entry in std::fs::read_dir(&seeds).expect("the seed folder") {
        let data = std::fs::read(entry.expect("a seed").path()).expect("a seed's bytes");
        parsed += usize::from(fuzz::check(&data));
    }
    assert!(parsed >= 20, "{parsed} seeds parse");
}
