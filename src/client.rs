//! What the client commands (`framelake sql`, `framelake perfetto`,
//! `framelake tail`) share:
//! where the server's query listener is, and as whom to ask it.

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub(crate) struct Connection {
    /// Base URL of the server's query listener.
    #[arg(long, env = "FRAMELAKE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Tenant to query (`X-Scope-OrgID`); with a token, the token's tenant is the default.
    #[arg(long, env = "FRAMELAKE_TENANT")]
    tenant: Option<String>,
    /// Bearer token (needed when the server has an auth file).
    #[arg(long, env = "FRAMELAKE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Connection {
    /// A WebSocket connected to `path` (with its query) of the query
    /// listener; the server's error message when it refuses the upgrade.
    pub(crate) async fn websocket(
        &self,
        path: &str,
    ) -> anyhow::Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    > {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let base = self.url.trim_end_matches('/');
        let url = match base.split_once("://") {
            Some(("https", rest)) => format!("wss://{rest}{path}"),
            Some((_, rest)) => format!("ws://{rest}{path}"),
            None => format!("ws://{base}{path}"),
        };
        let mut request = url.as_str().into_client_request()?;
        if let Some(tenant) = &self.tenant {
            request
                .headers_mut()
                .insert("x-scope-orgid", tenant.parse()?);
        }
        if let Some(token) = &self.token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                    .unwrap_or_default();
                anyhow::bail!("{}: {body}", response.status())
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("connecting to {url}"))),
        }
    }

    /// Sends a request to `path` of the query listener; the response when
    /// it succeeded, else the server's error message.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let mut request = build(reqwest::Client::new().request(method, &url));
        if let Some(tenant) = &self.tenant {
            request = request.header("x-scope-orgid", tenant);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            anyhow::bail!("{status}: {message}");
        }
        // What the answer leaves out (quarantined blocks, say).
        for warning in response.headers().get_all("framelake-warning") {
            eprintln!("warning: {}", String::from_utf8_lossy(warning.as_bytes()));
        }
        Ok(response)
    }
}
