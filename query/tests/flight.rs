//! FlightSQL from Rust's own client: tokens and tenants, prepared statements
//! with parameters, and errors with the gRPC status each calls for.

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use arrow_flight::error::FlightError;
use arrow_flight::sql::CommandGetTables;
use arrow_flight::sql::client::FlightSqlServiceClient;
use framelake_lake::tenancy::Tenancy;
use framelake_query::QueryLimits;
use futures::TryStreamExt;
use tonic::Code;

use crate::Stack;
use crate::data::{T0, logs_at};

async fn client(stack: &Stack) -> FlightSqlServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(stack.flight_url.clone())
        .expect("url")
        .connect()
        .await
        .expect("FlightSQL listener answers");
    FlightSqlServiceClient::new(channel)
}

/// Runs a statement; the rows of its first column as text, or the gRPC code.
async fn run(
    client: &mut FlightSqlServiceClient<tonic::transport::Channel>,
    sql: &str,
) -> Result<Vec<String>, (Code, String)> {
    let failed = |e: FlightError| match e {
        FlightError::Tonic(status) => (status.code(), status.message().to_owned()),
        other => (Code::Unknown, other.to_string()),
    };
    let info = client.execute(sql.to_owned(), None).await.map_err(failed)?;
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let batches: Vec<_> = client
        .do_get(ticket)
        .await
        .map_err(failed)?
        .try_collect()
        .await
        .map_err(failed)?;
    Ok(batches
        .iter()
        .flat_map(|b| {
            let column = b.column(0);
            (0..column.len())
                .map(|i| arrow::util::display::array_value_to_string(column, i).expect("display"))
                .collect::<Vec<_>>()
        })
        .collect())
}

const TOKENS: &str = r#"
    [[tokens]]
    token = "writer-a"
    tenant = "a"
    roles = ["write"]

    [[tokens]]
    token = "reader-a"
    tenant = "a"
    roles = ["read"]

    [[tokens]]
    token = "reader-b"
    tenant = "b"
    roles = ["read"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_tenants_hold_on_flightsql() {
    let stack = Stack::embedded(
        Tenancy::from_toml(TOKENS).expect("tokens"),
        QueryLimits::default(),
    )
    .await;
    let response = stack
        .client
        .post(format!("{}/v1/logs", stack.ingest_url))
        .header("content-type", "application/x-protobuf")
        .bearer_auth("writer-a")
        .body(logs_at(T0))
        .send()
        .await
        .expect("receiver answers");
    assert_eq!(response.status(), 200);
    let count = "SELECT count(*) FROM log_entries";

    let mut a = client(&stack).await;
    a.set_token("reader-a".into());
    assert_eq!(run(&mut a, count).await, Ok(vec!["4".to_owned()]));
    let mut b = client(&stack).await;
    b.set_token("reader-b".into());
    assert_eq!(run(&mut b, count).await, Ok(vec!["0".to_owned()]));
    b.set_header("x-scope-orgid", "a");
    assert_eq!(
        run(&mut b, count).await.map_err(|e| e.0),
        Err(Code::PermissionDenied)
    );
    let mut nobody = client(&stack).await;
    assert_eq!(
        run(&mut nobody, count).await.map_err(|e| e.0),
        Err(Code::Unauthenticated)
    );
    let mut writer = client(&stack).await;
    writer.set_token("writer-a".into());
    assert_eq!(
        run(&mut writer, count).await.map_err(|e| e.0),
        Err(Code::PermissionDenied)
    );
    // Catalog calls check the token too.
    let tables = nobody.get_tables(CommandGetTables::default()).await;
    assert!(tables.is_err(), "GetTables without a token");
}

#[tokio::test(flavor = "multi_thread")]
async fn prepared_statements_bind_parameters_and_errors_map_to_grpc_codes() {
    let limits = QueryLimits {
        memory_bytes: 4 << 20,
        ..QueryLimits::default()
    };
    let stack = Stack::embedded(Tenancy::open(), limits).await;
    stack.send("default", "logs", logs_at(T0)).await;
    let mut client = client(&stack).await;

    let mut prepared = client
        .prepare(
            "SELECT count(*) AS n FROM log_entries WHERE service_name = ? AND severity_number >= $2".into(),
            None,
        )
        .await
        .expect("prepares");
    assert_eq!(
        prepared.parameter_schema().expect("schema").fields().len(),
        2
    );
    let parameters = arrow::record_batch::RecordBatch::try_from_iter([
        (
            "1",
            std::sync::Arc::new(arrow::array::StringArray::from(vec!["checkout"])) as _,
        ),
        (
            "2",
            std::sync::Arc::new(arrow::array::Int32Array::from(vec![13])) as _,
        ),
    ])
    .expect("batch");
    prepared.set_parameters(parameters).expect("parameters");
    let info = prepared.execute().await.expect("executes");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let batches: Vec<_> = client
        .do_get(ticket)
        .await
        .expect("rows")
        .try_collect()
        .await
        .expect("rows");
    assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 2);

    for (sql, code) in [
        ("SELEC 1", Code::InvalidArgument),
        ("SELECT * FROM nope", Code::InvalidArgument),
        ("DROP VIEW spans", Code::InvalidArgument),
        (
            "SELECT v, count(*) FROM generate_series(1, 20000000) AS t(v) GROUP BY v ORDER BY 2 DESC LIMIT 1",
            Code::ResourceExhausted,
        ),
    ] {
        let got = run(&mut client, sql).await;
        assert_eq!(got.as_ref().map_err(|e| e.0), Err(code), "{sql}: {got:?}");
    }
}
