//! A stand-in for the admin server's clients, for `alternator bench
//! --with-admin`: one dashboard holding the event stream open and reading
//! every update, and a Prometheus-like scraper fetching `/metrics` at a
//! fixed rate. Plain blocking HTTP/1.1 over std sockets (loopback).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the clients did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct LoadReport {
    pub scrapes: u64,
    pub scrape_failures: u64,
    pub event_bytes: u64,
}

/// Running admin clients.
pub struct AdminLoad {
    stop: Arc<AtomicBool>,
    scrapes: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    event_bytes: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

fn get(addr: SocketAddr, path: &str) -> std::io::Result<usize> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    Ok(body.len())
}

impl AdminLoad {
    /// Opens the event stream and scrapes `/metrics` at `scrape_hz`.
    pub fn start(addr: SocketAddr, scrape_hz: f64) -> std::io::Result<AdminLoad> {
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let event_bytes = Arc::new(AtomicU64::new(0));
        let (st, sc, fa) = (stop.clone(), scrapes.clone(), failures.clone());
        let period = Duration::from_secs_f64(1.0 / scrape_hz.max(0.1));
        let scraper = std::thread::Builder::new().name("bench-scraper".into()).spawn(move || {
            let mut next = Instant::now();
            while !st.load(Ordering::Relaxed) {
                match get(addr, "/metrics") {
                    Ok(n) if n > 0 => sc.fetch_add(1, Ordering::Relaxed),
                    _ => fa.fetch_add(1, Ordering::Relaxed),
                };
                next += period;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })?;
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        write!(s, "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")?;
        let (st, eb) = (stop.clone(), event_bytes.clone());
        let dashboard = std::thread::Builder::new().name("bench-dashboard".into()).spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while !st.load(Ordering::Relaxed) {
                match s.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        eb.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(_) => return,
                }
            }
        })?;
        Ok(AdminLoad { stop, scrapes, failures, event_bytes, threads: vec![scraper, dashboard] })
    }

    /// Stops both clients.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        LoadReport {
            scrapes: self.scrapes.load(Ordering::Relaxed),
            scrape_failures: self.failures.load(Ordering::Relaxed),
            event_bytes: self.event_bytes.load(Ordering::Relaxed),
        }
    }
}
