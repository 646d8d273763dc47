//! Arrow FlightSQL on :50051: statements, prepared statements with
//! parameters, and the catalog calls (GetCatalogs, GetDbSchemas, GetTables,
//! GetTableTypes, GetSqlInfo) that the ADBC driver, pyarrow.flight and
//! Grafana's FlightSQL datasource use.
//!
//! Stateless: a ticket or a prepared statement handle carries the SQL (and
//! the bound parameters), so any query node can answer it; the caller's
//! token and tenant are checked again on every call.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use datafusion::common::ScalarValue;
use framelake_lake::ids::TenantId;
use framelake_lake::tenancy::{Role, Tenancy};
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::engine::Warnings;
use crate::{Engine, QueryError};

/// The catalog and schema the views are in.
const CATALOG: &str = "framelake";
const SCHEMA: &str = "public";
/// Every view is listed as a table: clients such as Grafana's FlightSQL
/// datasource list only `BASE TABLE`s (the views are read-only either way).
const TABLE_TYPE: &str = "BASE TABLE";

type FlightStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// The FlightSQL service.
#[derive(Clone)]
pub struct FlightSql {
    engine: Engine,
    tenancy: Tenancy,
    sql_info: Arc<SqlInfoData>,
}

impl FlightSql {
    pub fn new(engine: Engine, tenancy: Tenancy) -> Self {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "framelake");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        let sql_info = Arc::new(info.build().expect("valid SQL info"));
        FlightSql {
            engine,
            tenancy,
            sql_info,
        }
    }

    /// The gRPC service, for `tonic::transport::Server::add_service`.
    pub fn into_server(self) -> FlightServiceServer<Self> {
        FlightServiceServer::new(self)
    }

    fn tenant(&self, metadata: &MetadataMap) -> Result<TenantId, Status> {
        // A call's metadata are its HTTP/2 headers (a few, copied once per call).
        self.tenancy
            .authorize_headers(&metadata.clone().into_headers(), Role::Read)
            .map_err(|e| Status::from(QueryError::from(e)))
    }

    /// Runs a query and streams its rows as Flight data.
    async fn run(
        &self,
        tenant: &TenantId,
        sql: &str,
        parameters: Vec<ScalarValue>,
    ) -> Result<Response<FlightStream>, Status> {
        let rows = self
            .engine
            .sql_with(tenant, sql, parameters)
            .await
            .map_err(Status::from)?;
        let batches = rows
            .stream
            .map_err(|e| FlightError::from(Status::from(QueryError::from(e))));
        let mut response = stream(rows.schema, batches);
        // What the answer leaves out, known as the query starts.
        for warning in rows.warnings.all() {
            if let Ok(value) = Warnings::header_value(&warning).parse() {
                response.metadata_mut().append(Warnings::HEADER, value);
            }
        }
        Ok(response)
    }
}

fn stream(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> Response<FlightStream> {
    let data = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from);
    Response::new(Box::pin(data))
}

fn one_batch(batch: Result<RecordBatch, FlightError>) -> Result<Response<FlightStream>, Status> {
    let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
    let schema = batch.schema();
    Ok(stream(schema, futures::stream::once(async { Ok(batch) })))
}

fn flight_info(
    schema: &Schema,
    ticket: impl ProstMessageExt,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

fn ipc_schema(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

/// A prepared statement handle: the SQL, then the bound parameters as an
/// Arrow IPC stream (absent until bound).
struct Handle {
    sql: String,
    parameters: Vec<ScalarValue>,
}

impl Handle {
    fn encode(&self, parameters: Option<&RecordBatch>) -> Result<Bytes, Status> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.sql.len() as u32).to_le_bytes());
        out.extend_from_slice(self.sql.as_bytes());
        if let Some(batch) = parameters {
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())
                .map_err(|e| Status::internal(e.to_string()))?;
            writer
                .write(batch)
                .and_then(|()| writer.finish())
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(out.into())
    }

    fn decode(bytes: &[u8]) -> Result<Handle, Status> {
        let bad = || Status::invalid_argument("not a prepared statement handle of this server");
        let len = u32::from_le_bytes(
            bytes
                .get(..4)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        ) as usize;
        let sql = bytes.get(4..4 + len).ok_or_else(bad)?;
        let sql = String::from_utf8(sql.to_vec()).map_err(|_| bad())?;
        let rest = &bytes[4 + len..];
        let mut parameters = Vec::new();
        if !rest.is_empty() {
            let reader =
                arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(rest), None)
                    .map_err(|_| bad())?;
            for batch in reader {
                parameters = row_values(&batch.map_err(|_| bad())?)?;
            }
        }
        Ok(Handle { sql, parameters })
    }
}

/// The values of the first row of a parameter batch, in column order.
fn row_values(batch: &RecordBatch) -> Result<Vec<ScalarValue>, Status> {
    if batch.num_rows() != 1 {
        return Err(Status::invalid_argument(format!(
            "parameters: expected one row of values, got {}",
            batch.num_rows()
        )));
    }
    batch
        .columns()
        .iter()
        .map(|c| {
            ScalarValue::try_from_array(c, 0).map_err(|e| Status::invalid_argument(e.to_string()))
        })
        .collect()
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let tenant = self.tenant(request.metadata())?;
        let prepared = self
            .engine
            .prepare(&tenant, &query.query)
            .await
            .map_err(Status::from)?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        flight_info(&prepared.schema, ticket, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<FlightStream>, Status> {
        let tenant = self.tenant(request.metadata())?;
        let sql = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("the statement is not valid UTF-8"))?;
        self.run(&tenant, &sql, Vec::new()).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let tenant = self.tenant(request.metadata())?;
        let prepared = self
            .engine
            .prepare(&tenant, &query.query)
            .await
            .map_err(Status::from)?;
        let handle = Handle {
            sql: query.query,
            parameters: Vec::new(),
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.encode(None)?,
            dataset_schema: ipc_schema(&prepared.schema)?,
            parameter_schema: ipc_schema(&prepared.parameters)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        // Handles hold everything; nothing to free.
        self.tenant(request.metadata())?;
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.tenant(request.metadata())?;
        let handle = Handle::decode(&query.prepared_statement_handle)?;
        let data: Vec<FlightData> = request.into_inner().try_collect().await?;
        let batches = arrow_flight::utils::flight_data_to_batches(&data)
            .map_err(|e| Status::invalid_argument(format!("parameters: {e}")))?;
        let batch = batches
            .last()
            .ok_or_else(|| Status::invalid_argument("parameters: no values sent"))?;
        row_values(batch)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.encode(Some(batch))?),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let tenant = self.tenant(request.metadata())?;
        let handle = Handle::decode(&query.prepared_statement_handle)?;
        let prepared = self
            .engine
            .prepare(&tenant, &handle.sql)
            .await
            .map_err(Status::from)?;
        flight_info(&prepared.schema, query, request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<FlightStream>, Status> {
        let tenant = self.tenant(request.metadata())?;
        let handle = Handle::decode(&query.prepared_statement_handle)?;
        self.run(&tenant, &handle.sql, handle.parameters).await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(request.metadata())?;
        flight_info(&query.into_builder().schema(), query, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<FlightStream>, Status> {
        self.tenant(request.metadata())?;
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        one_batch(builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(request.metadata())?;
        flight_info(
            &query.clone().into_builder().schema(),
            query,
            request.into_inner(),
        )
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<FlightStream>, Status> {
        self.tenant(request.metadata())?;
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        one_batch(builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(request.metadata())?;
        flight_info(
            &query.clone().into_builder().schema(),
            query,
            request.into_inner(),
        )
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<FlightStream>, Status> {
        let tenant = self.tenant(request.metadata())?;
        let ctx = self.engine.session(&tenant).map_err(Status::from)?;
        let mut builder = query.into_builder();
        let mut names = ctx
            .catalog(CATALOG)
            .and_then(|c| c.schema(SCHEMA))
            .map(|s| s.table_names())
            .unwrap_or_default();
        names.sort();
        for name in names {
            let table = ctx
                .table_provider(name.as_str())
                .await
                .map_err(|e| Status::from(QueryError::from(e)))?;
            builder
                .append(CATALOG, SCHEMA, &name, TABLE_TYPE, &table.schema())
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(request.metadata())?;
        flight_info(&query.into_builder().schema(), query, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<FlightStream>, Status> {
        self.tenant(request.metadata())?;
        let mut builder = query.into_builder();
        builder.append(TABLE_TYPE);
        one_batch(builder.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(request.metadata())?;
        flight_info(
            &query.clone().into_builder(&self.sql_info).schema(),
            query,
            request.into_inner(),
        )
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<FlightStream>, Status> {
        self.tenant(request.metadata())?;
        one_batch(query.into_builder(&self.sql_info).build())
    }

    async fn do_handshake(
        &self,
        request: Request<Streaming<arrow_flight::HandshakeRequest>>,
    ) -> Result<
        Response<
            Pin<Box<dyn Stream<Item = Result<arrow_flight::HandshakeResponse, Status>> + Send>>,
        >,
        Status,
    > {
        // Tokens travel in every call's headers; the handshake only checks them.
        self.tenant(request.metadata())?;
        let response = arrow_flight::HandshakeResponse::default();
        Ok(Response::new(Box::pin(futures::stream::once(async {
            Ok(response)
        }))))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
