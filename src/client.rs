//! What the client commands (`framelake sql`, `framelake perfetto`) share:
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
