//! Who may do what, for which tenant: bearer tokens bound to a tenant and roles,
//! or, with authentication off, the tenant a request names (`X-Scope-OrgID`).
//!
//! The token file is TOML:
//!
//! ```toml
//! [[tokens]]
//! token = "a-long-random-secret"   # or token_sha256 = "<hex sha-256 of the token>"
//! tenant = "acme"
//! roles = ["write", "read"]
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::ids::TenantId;

/// The header that names a request's tenant (as in Loki, Tempo and Mimir).
pub const ORG_ID: &str = "x-scope-orgid";
use crate::{Error, Result};

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Send telemetry.
    Write,
    /// Query telemetry.
    Read,
}

/// Why a request may not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or unknown ones (HTTP 401, gRPC UNAUTHENTICATED).
    #[error("{0}")]
    Unauthenticated(String),
    /// Known credentials without the right (HTTP 403, gRPC PERMISSION_DENIED).
    #[error("{0}")]
    Forbidden(String),
    /// A malformed tenant id (HTTP 400).
    #[error("{0}")]
    BadTenant(String),
}

#[derive(Debug, Clone)]
struct Grant {
    tenant: TenantId,
    roles: Vec<Role>,
}

/// The authenticator every API asks.
#[derive(Debug, Clone, Default)]
pub struct Tenancy {
    /// `None`: authentication is off. Keys are SHA-256 digests of tokens.
    tokens: Option<HashMap<[u8; 32], Grant>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: Option<String>,
    token_sha256: Option<String>,
    tenant: String,
    roles: Vec<Role>,
}

impl Tenancy {
    /// Authentication off: the tenant comes from `X-Scope-OrgID`, else `default`.
    pub fn open() -> Self {
        Tenancy { tokens: None }
    }

    /// Authentication on, with the tokens of a TOML file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidInput(format!("auth file {}: {e}", path.display())))?;
        Self::from_toml(&text)
            .map_err(|e| Error::InvalidInput(format!("auth file {}: {e}", path.display())))
    }

    /// Authentication on, with the tokens of a TOML document.
    pub fn from_toml(text: &str) -> Result<Self> {
        let file: TokenFile =
            toml::from_str(text).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let mut tokens = HashMap::new();
        for (i, entry) in file.tokens.into_iter().enumerate() {
            let digest: [u8; 32] = match (entry.token, entry.token_sha256) {
                (Some(token), None) => Sha256::digest(token.as_bytes()).into(),
                (None, Some(hex)) => parse_hex32(&hex).ok_or_else(|| {
                    Error::InvalidInput(format!("token {i}: token_sha256 must be 64 hex digits"))
                })?,
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "token {i}: give exactly one of token and token_sha256"
                    )));
                }
            };
            let grant = Grant {
                tenant: entry.tenant.parse()?,
                roles: entry.roles,
            };
            if tokens.insert(digest, grant).is_some() {
                return Err(Error::InvalidInput(format!("token {i} is listed twice")));
            }
        }
        Ok(Tenancy {
            tokens: Some(tokens),
        })
    }

    /// Whether requests need a token.
    pub fn is_enabled(&self) -> bool {
        self.tokens.is_some()
    }

    /// The tenant a request acts for in `role`, from its `Authorization` and
    /// `X-Scope-OrgID` headers: the one way every API (HTTP, and gRPC through
    /// its metadata's headers) turns a request into a tenant.
    pub fn authorize_headers(
        &self,
        headers: &http::HeaderMap,
        role: Role,
    ) -> Result<TenantId, AuthError> {
        // Bytes that are not text (which HTTP allows) become replacement
        // characters: an invalid tenant id or token is refused rather than
        // taken for an absent one.
        let text = |name| {
            headers
                .get(name)
                .map(|v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()))
        };
        self.authorize(
            text(http::header::AUTHORIZATION.as_str()).as_deref(),
            text(ORG_ID).as_deref(),
            role,
        )
    }

    /// The tenant a request acts for in `role`, given its `Authorization` and
    /// `X-Scope-OrgID` header values.
    fn authorize(
        &self,
        authorization: Option<&str>,
        org_id: Option<&str>,
        role: Role,
    ) -> Result<TenantId, AuthError> {
        let named = org_id
            .map(|t| {
                t.trim()
                    .parse::<TenantId>()
                    .map_err(|e| AuthError::BadTenant(format!("X-Scope-OrgID: {e}")))
            })
            .transpose()?;
        let Some(tokens) = &self.tokens else {
            return Ok(named.unwrap_or_else(TenantId::default_tenant));
        };
        let token = authorization.ok_or_else(|| {
            AuthError::Unauthenticated("missing Authorization: Bearer <token> header".to_owned())
        })?;
        let token = token
            .strip_prefix("Bearer ")
            .or_else(|| token.strip_prefix("bearer "))
            .ok_or_else(|| {
                AuthError::Unauthenticated(
                    "the Authorization header must be Bearer <token>".to_owned(),
                )
            })?;
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let grant = tokens
            .get(&digest)
            .ok_or_else(|| AuthError::Unauthenticated("unknown token".to_owned()))?;
        if !grant.roles.contains(&role) {
            return Err(AuthError::Forbidden(format!(
                "this token may not {}",
                match role {
                    Role::Write => "write",
                    Role::Read => "read",
                }
            )));
        }
        match named {
            Some(named) if named != grant.tenant => Err(AuthError::Forbidden(format!(
                "this token belongs to tenant {:?} and cannot act for tenant {:?}",
                grant.tenant.as_str(),
                named.as_str()
            ))),
            _ => Ok(grant.tenant.clone()),
        }
    }
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [[tokens]]
        token = "writer-a"
        tenant = "a"
        roles = ["write"]

        [[tokens]]
        # sha256("reader-b")
        token_sha256 = "REPLACE"
        tenant = "b"
        roles = ["read"]
    "#;

    fn tenancy() -> Tenancy {
        let digest: [u8; 32] = Sha256::digest(b"reader-b").into();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Tenancy::from_toml(&FILE.replace("REPLACE", &hex)).expect("valid file")
    }

    #[test]
    fn open_mode_takes_the_named_tenant() {
        let t = Tenancy::open();
        assert_eq!(
            t.authorize(None, None, Role::Write).expect("ok").as_str(),
            "default"
        );
        assert_eq!(
            t.authorize(None, Some("acme"), Role::Write)
                .expect("ok")
                .as_str(),
            "acme"
        );
        assert!(matches!(
            t.authorize(None, Some("a/b"), Role::Write),
            Err(AuthError::BadTenant(_))
        ));
    }

    #[test]
    fn headers_name_the_tenant_and_carry_the_token() {
        let mut headers = http::HeaderMap::new();
        headers.insert(ORG_ID, http::HeaderValue::from_static("acme"));
        let open = Tenancy::open();
        assert_eq!(
            open.authorize_headers(&headers, Role::Read)
                .expect("ok")
                .as_str(),
            "acme"
        );
        // A tenant id that is not text is refused, not taken for no tenant.
        headers.insert(
            ORG_ID,
            http::HeaderValue::from_bytes(b"ac\xffme").expect("a header value"),
        );
        assert!(matches!(
            open.authorize_headers(&headers, Role::Read),
            Err(AuthError::BadTenant(_))
        ));
        headers.remove(ORG_ID);
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer reader-b"),
        );
        let t = tenancy();
        assert_eq!(
            t.authorize_headers(&headers, Role::Read)
                .expect("ok")
                .as_str(),
            "b"
        );
        assert!(matches!(
            t.authorize_headers(&headers, Role::Write),
            Err(AuthError::Forbidden(_))
        ));
    }

    #[test]
    fn tokens_bind_tenant_and_role() {
        let t = tenancy();
        assert_eq!(
            t.authorize(Some("Bearer writer-a"), None, Role::Write)
                .expect("ok")
                .as_str(),
            "a"
        );
        assert_eq!(
            t.authorize(Some("Bearer writer-a"), Some("a"), Role::Write)
                .expect("ok")
                .as_str(),
            "a"
        );
        assert_eq!(
            t.authorize(Some("Bearer reader-b"), None, Role::Read)
                .expect("ok")
                .as_str(),
            "b"
        );
        assert!(matches!(
            t.authorize(None, None, Role::Write),
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(matches!(
            t.authorize(Some("Bearer nope"), None, Role::Write),
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(matches!(
            t.authorize(Some("Basic x"), None, Role::Write),
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(matches!(
            t.authorize(Some("Bearer writer-a"), Some("b"), Role::Write),
            Err(AuthError::Forbidden(_))
        ));
        assert!(matches!(
            t.authorize(Some("Bearer reader-b"), None, Role::Write),
            Err(AuthError::Forbidden(_))
        ));
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(Tenancy::from_toml("[[tokens]]\ntenant = \"a\"\nroles = []").is_err());
        assert!(
            Tenancy::from_toml("[[tokens]]\ntoken = \"x\"\ntenant = \"a b\"\nroles = []").is_err()
        );
        assert!(
            Tenancy::from_toml("[[tokens]]\ntoken = \"x\"\ntenant = \"a\"\nroles = [\"admin\"]")
                .is_err()
        );
    }
}
