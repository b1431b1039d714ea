//! A ZAP handler (ZeroMQ RFC 27) enforcing per-socket IP allowlists: every
//! socket with an `allow_ips` list gets a ZAP domain; libzmq asks this
//! handler about each new connection to it, and connections from other
//! addresses are refused (and counted). Runs on its own thread on the
//! daemon's ZeroMQ context; never touches the decode loop.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::warn;

/// Where libzmq looks for the handler (fixed by RFC 27).
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// The running handler; stopped and joined on drop.
pub struct ZapHandler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ZapHandler {
    /// Binds the handler on `ctx` (before any socket using a domain is
    /// bound) and answers for `domains`: domain name → allowed addresses.
    pub fn start(
        ctx: &zmq::Context,
        domains: HashMap<String, Vec<IpAddr>>,
        refused: Arc<AtomicU64>,
    ) -> Result<Self, crate::transport::SocketError> {
        let (sock, _) = crate::transport::open_socket(ctx, zmq::REP, ZAP_ENDPOINT, true, |s| s.set_rcvtimeo(100))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("zap".into())
            .spawn(move || serve(&sock, &domains, &refused, &s))
            .map_err(|e| crate::transport::SocketError {
                action: "start the handler thread for",
                endpoint: ZAP_ENDPOINT.into(),
                source: zmq::Error::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN)),
            })?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for ZapHandler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The decision for one request: `(status code, text)`.
pub fn decide(domains: &HashMap<String, Vec<IpAddr>>, domain: &str, address: &str) -> (&'static str, &'static str) {
    let Some(allowed) = domains.get(domain) else {
        return ("200", "OK"); // a socket without an allowlist
    };
    match address.parse::<IpAddr>() {
        Ok(ip) if allowed.contains(&ip) => ("200", "OK"),
        _ => ("400", "address not in allow_ips"),
    }
}

fn serve(sock: &zmq::Socket, domains: &HashMap<String, Vec<IpAddr>>, refused: &AtomicU64, stop: &AtomicBool) {
    let mut last_warned: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        let Ok(req) = sock.recv_multipart(0) else { continue };
        // version, request id, domain, address, identity, mechanism, credentials...
        if req.len() < 6 {
            let _ = sock.send_multipart(["1.0".as_bytes(), b"", b"500", b"malformed ZAP request", b"", b""], 0);
            continue;
        }
        let domain = String::from_utf8_lossy(&req[2]);
        let address = String::from_utf8_lossy(&req[3]);
        let (code, text) = decide(domains, &domain, &address);
        if code != "200" {
            refused.fetch_add(1, Ordering::Relaxed);
            if last_warned.as_deref() != Some(&address) {
                warn!(socket = %domain, address = %address, "Refused a connection from an address not in allow_ips.");
                last_warned = Some(address.to_string());
            }
        }
        let _ = sock.send_multipart([&b"1.0"[..], &req[1], code.as_bytes(), text.as_bytes(), b"", b""], 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_addresses_pass_in_a_domain_with_a_list() {
        let mut d = HashMap::new();
        d.insert("publish".to_string(), vec!["10.0.0.2".parse().unwrap()]);
        assert_eq!(decide(&d, "publish", "10.0.0.2").0, "200");
        assert_eq!(decide(&d, "publish", "10.0.0.3").0, "400");
        assert_eq!(decide(&d, "publish", "garbage").0, "400");
        assert_eq!(decide(&d, "control", "10.0.0.3").0, "200");
    }
}
