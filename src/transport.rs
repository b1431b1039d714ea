//! ZeroMQ socket set-up shared by the sources, the publisher and the control
//! socket: options are applied *before* bind/connect (libzmq copies them into
//! each listener and connection when it is made, so options set afterwards
//! silently do not apply), and every failure names the endpoint.

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
