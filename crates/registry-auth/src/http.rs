//! The token endpoint over HTTP: `GET /auth/token` (Docker token protocol, Basic credentials)
//! and `POST /auth/token` (OAuth2 password grant, as containerd may send).

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use crate::issue::{Credentials, TokenError, TokenRequest, TokenService};
use crate::scope::parse_scopes;
use crate::signer::SignedToken;

/// The client's address, added to every request of a connection by the listener.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// The routes of the token endpoint.
pub fn router(service: TokenService) -> Router {
    Router::new()
        .route("/auth/token", get(get_token).post(post_token))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(service)
}

async fn get_token(
    State(service): State<TokenService>,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let request = match get_request(&headers, query.as_deref().unwrap_or_default()) {
        Ok(request) => request,
        Err(err) => return error_response(&err, service_name(&service)),
    };
    respond(&service, client, request, false).await
}

async fn post_token(
    State(service): State<TokenService>,
    client: Option<axum::Extension<ClientAddr>>,
    body: Bytes,
) -> Response {
    let request = match post_request(&body) {
        Ok(request) => request,
        Err(err) => return error_response(&err, service_name(&service)),
    };
    respond(&service, client, request, true).await
}

async fn respond(
    service: &TokenService,
    client: Option<axum::Extension<ClientAddr>>,
    mut request: TokenRequest,
    oauth: bool,
) -> Response {
    request.client = client.map(|axum::Extension(ClientAddr(addr))| addr);
    match service.issue(request).await {
        Ok(token) => token_response(&token, oauth),
        Err(err) => error_response(&err, service_name(service)),
    }
}

fn service_name(service: &TokenService) -> String {
    service.service_name().to_owned()
}

/// A `GET` request: `service` and `scope` (repeatable) in the query, Basic credentials or none.
pub fn get_request(headers: &HeaderMap, query: &str) -> Result<TokenRequest, TokenError> {
    let mut service = None;
    let mut scopes = vec![];
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "service" => service = Some(value.into_owned()),
            "scope" => scopes.push(value.into_owned()),
            _ => {}
        }
    }
    Ok(TokenRequest {
        credentials: basic_credentials(headers)?,
        service,
        scopes: parse_scopes(scopes.iter().map(String::as_str))
            .map_err(|err| TokenError::BadRequest(err.to_string()))?,
        client: None,
    })
}

/// A `POST` request: an OAuth2 form with `grant_type=password`.
pub fn post_request(body: &[u8]) -> Result<TokenRequest, TokenError> {
    let mut form = std::collections::HashMap::new();
    let mut scopes = vec![];
    for (key, value) in form_urlencoded::parse(body) {
        if key == "scope" {
            scopes.push(value.into_owned());
        } else {
            form.insert(key.into_owned(), value.into_owned());
        }
    }
    match form.get("grant_type").map(String::as_str) {
        Some("password") => {}
        Some(other) => {
            return Err(TokenError::BadRequest(format!(
                "grant_type {other:?} is not supported: use password (or GET with Basic credentials)"
            )));
        }
        None => {
            return Err(TokenError::BadRequest(
                "grant_type is missing: use grant_type=password".into(),
            ));
        }
    }
    let (Some(username), Some(password)) = (form.remove("username"), form.remove("password"))
    else {
        return Err(TokenError::BadRequest(
            "the password grant needs username and password".into(),
        ));
    };
    Ok(TokenRequest {
        credentials: Some(Credentials { username, password }),
        service: form.remove("service"),
        scopes: parse_scopes(scopes.iter().map(String::as_str))
            .map_err(|err| TokenError::BadRequest(err.to_string()))?,
        client: None,
    })
}

/// `Authorization: Basic …` → credentials; no header → anonymous.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<Credentials>, TokenError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || {
        TokenError::BadRequest(
            "the Authorization header must be Basic base64(user:password)".into(),
        )
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (username, password) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok(Some(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    }))
}

fn token_response(token: &SignedToken, oauth: bool) -> Response {
    let issued_at = Timestamp::try_from(token.issued_at)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let mut body = json!({
        "token": token.jwt,
        "access_token": token.jwt,
        "expires_in": token.expires_in.as_secs(),
        "issued_at": issued_at,
    });
    if oauth {
        body["token_type"] = json!("Bearer");
    }
    json_response(StatusCode::OK, &body)
}

fn error_response(err: &TokenError, service: String) -> Response {
    let (status, code) = match err {
        TokenError::BadRequest(_) => (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
        TokenError::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        TokenError::Internal(message) => {
            tracing::error!(%message, "token not issued");
            (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN")
        }
    };
    let body = json!({"errors": [{"code": code, "message": err.to_string()}]});
    let mut response = json_response(status, &body);
    if status == StatusCode::UNAUTHORIZED
        && let Ok(challenge) =
            HeaderValue::from_str(&format!("Basic realm={service:?}, charset=\"UTF-8\""))
    {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_password: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("Basic {}", STANDARD.encode(user_password));
        headers.insert(header::AUTHORIZATION, value.parse().expect("header value"));
        headers
    }

    #[test]
    fn reads_credentials_service_and_every_scope() {
        let request = get_request(
            &basic("alice:pa:ss"),
            "service=reg&scope=repository%3Aapp%3Apull&scope=repository:base:pull&account=alice",
        )
        .expect("valid");
        let credentials = request.credentials.expect("credentials");
        assert_eq!(credentials.username, "alice");
        assert_eq!(
            credentials.password, "pa:ss",
            "a password may contain colons"
        );
        assert_eq!(request.service.as_deref(), Some("reg"));
        assert_eq!(request.scopes.len(), 2);
    }

    #[test]
    fn no_header_is_anonymous_and_a_bad_one_is_refused() {
        let request = get_request(&HeaderMap::new(), "service=reg").expect("valid");
        assert!(request.credentials.is_none());
        assert!(request.scopes.is_empty());
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, "Bearer x".parse().expect("value"));
        assert!(matches!(
            get_request(&bearer, ""),
            Err(TokenError::BadRequest(_))
        ));
        assert!(matches!(
            get_request(&basic("nocolon"), ""),
            Err(TokenError::BadRequest(_))
        ));
        assert!(matches!(
            get_request(&HeaderMap::new(), "scope=bad"),
            Err(TokenError::BadRequest(_))
        ));
    }

    #[test]
    fn oauth_password_grant_is_understood() {
        let request = post_request(
            b"grant_type=password&username=bob&password=pw&service=reg&scope=repository:a:pull repository:b:push&client_id=containerd",
        )
        .expect("valid");
        assert_eq!(request.credentials.expect("credentials").username, "bob");
        assert_eq!(request.scopes.len(), 2);
        let err = post_request(b"grant_type=refresh_token&refresh_token=x").expect_err("refused");
        assert!(err.to_string().contains("not supported"), "{err}");
        assert!(post_request(b"grant_type=password&username=bob").is_err());
    }

    #[test]
    fn unauthorized_carries_a_basic_challenge() {
        let response = error_response(&TokenError::Unauthorized, "reg".into());
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .expect("ascii");
        assert!(challenge.starts_with("Basic realm=\"reg\""), "{challenge}");
    }
}
