//! ZeroMQ socket set-up shared by the sources, the publisher and the control
//! socket: options are applied *before* bind/connect (libzmq copies them into
//! each listener and connection when it is made, so options set afterwards
//! silently do not apply), and every failure names the endpoint.
//!
//! Access rules live here too: a socket that binds beyond loopback must be
//! allowed explicitly (`allow_remote`), and an IP allowlist (`allow_ips`) is
//! enforced by a ZAP handler ([`zap`]) — the sockets carry no
//! authentication (this libzmq is built without CURVE).

pub mod zap;

use std::net::IpAddr;

/// A socket that could not be created, configured, bound or connected.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {endpoint}: {source}")]
pub struct SocketError {
    pub action: &'static str,
    pub endpoint: String,
    pub source: zmq::Error,
}

impl SocketError {
    /// The address is taken by another process (exit code 69 at start-up).
    pub fn is_in_use(&self) -> bool {
        self.source == zmq::Error::EADDRINUSE
    }
}

/// Creates a socket, applies `configure`, then binds or connects; returns the
/// socket and the endpoint actually used (wildcard ports resolved).
pub fn open_socket(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    endpoint: &str,
    bind: bool,
    configure: impl FnOnce(&zmq::Socket) -> Result<(), zmq::Error>,
) -> Result<(zmq::Socket, String), SocketError> {
    let err = |action, source| SocketError { action, endpoint: endpoint.to_string(), source };
    let s = ctx.socket(kind).map_err(|e| err("create a socket for", e))?;
    s.set_linger(1000).map_err(|e| err("configure", e))?;
    configure(&s).map_err(|e| err("configure", e))?;
    if bind {
        s.bind(endpoint).map_err(|e| err("bind", e))?;
    } else {
        s.connect(endpoint).map_err(|e| err("connect to", e))?;
    }
    let actual = s.get_last_endpoint().ok().and_then(|r| r.ok()).unwrap_or_else(|| endpoint.to_string());
    Ok((s, actual))
}

/// The host part of a `tcp://HOST:PORT` endpoint (None for ipc/inproc).
pub fn tcp_host(endpoint: &str) -> Option<&str> {
    let rest = endpoint.strip_prefix("tcp://")?;
    let rest = rest.rsplit_once(';').map(|(_, dest)| dest).unwrap_or(rest);
    let (host, _) = rest.rsplit_once(':')?;
    Some(host.trim_start_matches('[').trim_end_matches(']'))
}

/// A bind on `endpoint` is reachable from this machine only.
pub fn binds_loopback_only(endpoint: &str) -> bool {
    match tcp_host(endpoint) {
        None => true, // ipc:// and inproc:// never leave the machine
        Some("localhost") | Some("lo") => true,
        Some(h) => h.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false),
    }
}

/// Who may connect to one bound socket.
#[derive(Debug, Clone, PartialEq)]
pub struct Access<'a> {
    /// Dotted config path of the section, e.g. `publish.`.
    pub prefix: &'a str,
    pub endpoint: &'a str,
    pub bind: bool,
    pub allow_remote: bool,
    pub allow_ips: &'a [String],
}

impl Access<'_> {
    /// Every problem with the access settings, each with its field path.
    pub fn problems(&self) -> Vec<String> {
        let p = self.prefix;
        let mut e = Vec::new();
        if self.bind && !self.allow_remote && !binds_loopback_only(self.endpoint) {
            e.push(format!(
                "{p}endpoint: {:?} binds beyond loopback, so other machines can connect, and the \
                 daemon's sockets carry no authentication; set {p}allow_remote = true to allow it \
                 (and {p}allow_ips to name who may connect), or bind 127.0.0.1",
                self.endpoint
            ));
        }
        for (i, ip) in self.allow_ips.iter().enumerate() {
            if ip.parse::<IpAddr>().is_err() {
                e.push(format!("{p}allow_ips[{i}]: {ip:?} is not an IP address"));
            }
        }
        e
    }

    /// The allowlist as addresses (entries that do not parse are refused by `problems`).
    pub fn allowed(&self) -> Vec<IpAddr> {
        self.allow_ips.iter().filter_map(|s| s.parse().ok()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_binds() {
        for ep in ["tcp://127.0.0.1:5555", "tcp://localhost:1", "tcp://[::1]:2", "ipc:///tmp/x", "inproc://a"] {
            assert!(binds_loopback_only(ep), "{ep}");
        }
        for ep in ["tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://10.1.2.3:5555", "tcp://eth0:5555"] {
            assert!(!binds_loopback_only(ep), "{ep}");
        }
    }

    #[test]
    fn a_remote_bind_needs_allow_remote() {
        let ips = vec!["10.0.0.2".to_string(), "nope".to_string()];
        let a = Access {
            prefix: "publish.",
            endpoint: "tcp://0.0.0.0:1",
            bind: true,
            allow_remote: false,
            allow_ips: &ips,
        };
        let p = a.problems();
        assert!(p[0].starts_with("publish.endpoint") && p[0].contains("publish.allow_remote"), "{p:?}");
        assert!(p[1].starts_with("publish.allow_ips[1]"), "{p:?}");
        let ok = Access { allow_remote: true, allow_ips: &ips[..1], ..a };
        assert!(ok.problems().is_empty());
        assert_eq!(ok.allowed(), vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
        let connect = Access { bind: false, allow_ips: &[], ..a };
        assert!(connect.problems().is_empty(), "connecting to a remote rig is not a bind");
    }
}
