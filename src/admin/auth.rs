//! Who may use the admin server. Loopback clients always may; any other
//! client must present the configured bearer token (`Authorization: Bearer
//! TOKEN`, or `?token=TOKEN` for the dashboard's own page and event stream,
//! which a browser cannot give headers). State-changing requests from a
//! browser must come from the dashboard's own origin, so another web page
//! open on the rig computer cannot trigger a retrain or a rollback.
//!
//! Invariant: with no token configured, non-loopback clients are refused.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, Method};

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required from {peer} (not a loopback address)")]
    MissingToken { peer: SocketAddr },
    #[error("the bearer token from {peer} does not match")]
    BadToken { peer: SocketAddr },
    #[error("{method} from origin {origin:?} refused: only the dashboard's own origin may change state")]
    ForeignOrigin { method: String, origin: String },
}

impl AuthError {
    /// 401 for credentials, 403 for a foreign origin.
    pub fn status(&self) -> axum::http::StatusCode {
        match self {
            AuthError::ForeignOrigin { .. } => axum::http::StatusCode::FORBIDDEN,
            _ => axum::http::StatusCode::UNAUTHORIZED,
        }
    }
}

/// Compares in time independent of where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token a request presents, from its header or its query string.
fn presented<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    from_header.or_else(|| query?.split('&').find_map(|kv| kv.strip_prefix("token=")).filter(|t| !t.is_empty()))
}

/// Checks one request: the peer's address, the token, and the origin of state changes.
pub fn check(
    peer: SocketAddr,
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    token: &str,
) -> Result<(), AuthError> {
    if !peer.ip().is_loopback() {
        match presented(headers, query) {
            None => return Err(AuthError::MissingToken { peer }),
            Some(t) if token.is_empty() || !same(t.as_bytes(), token.as_bytes()) => {
                return Err(AuthError::BadToken { peer })
            }
            Some(_) => {}
        }
    }
    if method != Method::GET && method != Method::HEAD {
        check_origin(method, headers)?;
    }
    Ok(())
}

/// A browser's `Origin` on a state change must name the host it was sent to.
fn check_origin(method: &Method, headers: &HeaderMap) -> Result<(), AuthError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(()); // not a browser (curl, scripts)
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
    if !host.is_empty() && origin_host == host {
        Ok(())
    } else {
        Err(AuthError::ForeignOrigin { method: method.to_string(), origin: origin.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef";

    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        h
    }

    #[test]
    fn loopback_needs_no_token() {
        assert_eq!(check(peer("127.0.0.1:5000"), &Method::GET, &HeaderMap::new(), None, ""), Ok(()));
        assert_eq!(check(peer("[::1]:5000"), &Method::POST, &HeaderMap::new(), None, TOKEN), Ok(()));
    }

    #[test]
    fn remote_needs_the_right_token() {
        let p = peer("192.0.2.7:5000");
        let none = check(p, &Method::GET, &HeaderMap::new(), None, TOKEN).unwrap_err();
        assert_eq!(none, AuthError::MissingToken { peer: p });
        assert_eq!(none.status(), axum::http::StatusCode::UNAUTHORIZED);
        assert!(matches!(check(p, &Method::GET, &bearer("wrong"), None, TOKEN), Err(AuthError::BadToken { .. })));
        assert_eq!(check(p, &Method::GET, &bearer(TOKEN), None, TOKEN), Ok(()));
        assert_eq!(check(p, &Method::GET, &HeaderMap::new(), Some("a=1&token=0123456789abcdef"), TOKEN), Ok(()));
        // No token configured: nobody remote gets in, whatever they send.
        assert!(check(p, &Method::GET, &bearer(""), None, "").is_err());
    }

    #[test]
    fn state_changes_only_from_the_own_origin() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:9187".parse().unwrap());
        assert_eq!(check(peer("127.0.0.1:1"), &Method::POST, &h, None, ""), Ok(()));
        h.insert(header::ORIGIN, "http://127.0.0.1:9187".parse().unwrap());
        assert_eq!(check(peer("127.0.0.1:1"), &Method::POST, &h, None, ""), Ok(()));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        let e = check(peer("127.0.0.1:1"), &Method::POST, &h, None, "").unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::FORBIDDEN);
        assert_eq!(check(peer("127.0.0.1:1"), &Method::GET, &h, None, ""), Ok(()));
    }
}
