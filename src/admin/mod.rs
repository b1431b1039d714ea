//! The admin HTTP server: Prometheus metrics (`/metrics`), a JSON API
//! (`/api/*`, the same [`Control`] the ZeroMQ control socket uses) and a
//! live browser dashboard (`/`, assets embedded in the binary, updates
//! pushed over Server-Sent Events).
//!
//! It runs on its own named thread (`admin`) with a single-threaded tokio
//! runtime. Its listener is bound in `Daemon::start` with the other sockets,
//! before any thread starts, so a taken port fails the start.
//!
//! Invariants: nothing here runs on or waits for the decode loop's thread;
//! it reads the loop's atomic counters and drains the loop's bounded output
//! feed (which the loop fills without blocking); blocking control calls
//! (rollback waits for the retrainer) run on tokio's blocking pool.

pub mod auth;
pub mod config;
pub mod live;
pub mod load;
pub mod metrics;

mod api;
mod dashboard;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tracing::{info, warn};

pub use config::AdminSection;
use live::LiveView;

use crate::daemon::control::Control;
use crate::daemon::telemetry::FeedReceiver;

/// Why the admin server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin.listen: {listen:?} is not an address:port")]
    BadAddress { listen: String },
    #[error("cannot listen on {addr} (admin.listen): {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the admin server's runtime or thread: {0}")]
    Start(std::io::Error),
}

impl AdminError {
    /// The port is taken by another process.
    pub fn is_address_in_use(&self) -> bool {
        matches!(self, AdminError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse)
    }
}

/// A bound, not yet served, listener.
#[derive(Debug)]
pub struct AdminListener {
    listener: std::net::TcpListener,
    /// The address actually bound (port 0 resolved).
    pub addr: SocketAddr,
}

/// Binds `admin.listen` (the caller has validated the section).
pub fn bind(cfg: &AdminSection) -> Result<AdminListener, AdminError> {
    let addr = cfg.addr().ok_or_else(|| AdminError::BadAddress { listen: cfg.listen.clone() })?;
    let listener = std::net::TcpListener::bind(addr).map_err(|source| AdminError::Bind { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| AdminError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(|source| AdminError::Bind { addr, source })?;
    Ok(AdminListener { listener, addr })
}

/// State shared by the request handlers and the refresh task.
pub struct Shared {
    control: Arc<Control>,
    live: Mutex<LiveView>,
    updates: broadcast::Sender<Arc<str>>,
    token: String,
    recording: bool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("recording", &self.recording).finish_non_exhaustive()
    }
}

impl Shared {
    fn live(&self) -> std::sync::MutexGuard<'_, LiveView> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bins/s as last refreshed.
    pub fn bins_per_s(&self) -> f64 {
        self.live().bins_per_s()
    }
}

/// What the admin server serves.
pub struct AdminParts {
    pub control: Arc<Control>,
    pub feed: FeedReceiver,
    /// Bin width of the stream (seconds), for the plot's time axis.
    pub bin_seconds: f64,
    pub recording: bool,
}

/// The running server.
pub struct AdminHandle {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl AdminHandle {
    /// Stops serving (open event streams end) and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

impl Drop for AdminHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the server thread on a bound listener.
pub fn spawn(l: AdminListener, cfg: &AdminSection, parts: AdminParts) -> Result<AdminHandle, AdminError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(AdminError::Start)?;
    let (updates, _) = broadcast::channel(64);
    let shared = Arc::new(Shared {
        control: parts.control,
        live: Mutex::new(LiveView::new(parts.feed, parts.bin_seconds)),
        updates,
        token: cfg.token.clone(),
        recording: parts.recording,
    });
    let (stop, stop_rx) = watch::channel(false);
    let period = Duration::from_secs_f64(1.0 / cfg.push_hz.clamp(0.1, 20.0));
    let addr = l.addr;
    let thread = std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || rt.block_on(serve(l.listener, shared, period, stop_rx)))
        .map_err(AdminError::Start)?;
    info!(url = %format!("http://{addr}/"), "Admin server listening.");
    Ok(AdminHandle { stop, thread: Some(thread), addr })
}

async fn wait_stop(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn serve(
    std_listener: std::net::TcpListener,
    shared: Arc<Shared>,
    period: Duration,
    stop: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "Admin listener unusable; the admin server is off.");
            return;
        }
    };
    tokio::spawn(refresh(shared.clone(), period, stop.clone()));
    let app = api::router(shared, stop.clone());
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(wait_stop(stop.clone()));
    let task = tokio::spawn(std::future::IntoFuture::into_future(server));
    wait_stop(stop).await;
    // Connections still open after this are cut when the runtime drops.
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
}

/// Refreshes the live view and pushes one update to every dashboard.
async fn refresh(shared: Arc<Shared>, period: Duration, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !*stop.borrow() {
        tick.tick().await;
        let update = {
            let mut live = shared.live();
            live.refresh(&shared.control, std::time::Instant::now());
            (shared.updates.receiver_count() > 0).then(|| live.update(&shared.control, shared.recording, false))
        };
        if let Some(u) = update {
            let _ = shared.updates.send(Arc::from(u.to_string()));
        }
    }
}
