//! `[admin]` of the serve config: where the HTTP admin server listens and
//! who may talk to it. Loopback by default; any other address needs
//! `allow_remote = true` and a bearer token, checked here up front.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Shortest bearer token accepted for remote access.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The admin server: Prometheus metrics, a JSON API and a live dashboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Serve the admin HTTP server at all (`serve --admin ADDR` turns it on).
    pub enabled: bool,
    /// Address and port to listen on (port 0 = any free port).
    pub listen: String,
    /// Allow a non-loopback `listen` address (then `token` is required).
    pub allow_remote: bool,
    /// Bearer token required from non-loopback clients (`Authorization: Bearer ...`).
    pub token: String,
    /// Dashboard updates per second pushed to each browser (at most 20).
    pub push_hz: f64,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:9187".into(),
            allow_remote: false,
            token: String::new(),
            push_hz: 10.0,
        }
    }
}

impl AdminSection {
    /// The listen address, if it parses.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }

    /// Every problem, each with its dotted field path (`admin.`).
    pub fn problems(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !(self.push_hz > 0.0 && self.push_hz <= 20.0) {
            e.push(format!("admin.push_hz: {} must be in (0, 20]", self.push_hz));
        }
        if self.allow_remote && self.token.chars().count() < MIN_TOKEN_CHARS {
            e.push(format!(
                "admin.token: {} characters; expected at least {MIN_TOKEN_CHARS} when admin.allow_remote = true",
                self.token.chars().count()
            ));
        }
        if !self.enabled {
            return e;
        }
        match self.addr() {
            None => e.push(format!("admin.listen: {:?} is not an address:port (expected e.g. \"127.0.0.1:9187\")", self.listen)),
            Some(a) if !a.ip().is_loopback() && !self.allow_remote => e.push(format!(
                "admin.listen: {} is not a loopback address; set admin.allow_remote = true and an admin.token to serve other machines",
                a.ip()
            )),
            Some(_) => {}
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled(listen: &str) -> AdminSection {
        AdminSection { enabled: true, listen: listen.into(), ..AdminSection::default() }
    }

    #[test]
    fn loopback_is_fine_remote_needs_a_token() {
        assert!(enabled("127.0.0.1:9187").problems().is_empty());
        assert!(enabled("[::1]:0").problems().is_empty());
        let p = enabled("0.0.0.0:9187").problems();
        assert!(p.len() == 1 && p[0].starts_with("admin.listen") && p[0].contains("allow_remote"), "{p:?}");
        let mut c = enabled("0.0.0.0:9187");
        c.allow_remote = true;
        let p = c.problems();
        assert!(p.len() == 1 && p[0].starts_with("admin.token"), "{p:?}");
        c.token = "0123456789abcdef".into();
        assert!(c.problems().is_empty());
    }

    #[test]
    fn bad_values_are_named() {
        let mut c = enabled("localhost");
        c.push_hz = 50.0;
        let p = c.problems();
        assert!(p.iter().any(|s| s.starts_with("admin.listen")), "{p:?}");
        assert!(p.iter().any(|s| s.starts_with("admin.push_hz")), "{p:?}");
    }
}
