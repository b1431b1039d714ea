//! The dashboard: one HTML page, its script and style, and the vendored
//! uPlot (MIT, `assets/vendor/uplot/`), all embedded in the binary so the
//! page works on an offline rig computer; and `/api/events`, the
//! Server-Sent Events stream of live updates (a full snapshot first, then
//! one update per refresh, at most 20 a second).
//!
//! Invariant: an event stream ends when the server stops, so shutdown never
//! waits on an open browser tab.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::api::AppState;

const INDEX_HTML: &str = include_str!("../../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../../assets/dashboard/app.css");
const UPLOT_JS: &str = include_str!("../../assets/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/vendor/uplot/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../../assets/vendor/uplot/LICENSE");

/// Routes of the page, its assets and the event stream.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route("/assets/app.js", get(|| asset("text/javascript; charset=utf-8", APP_JS)))
        .route("/assets/app.css", get(|| asset("text/css; charset=utf-8", APP_CSS)))
        .route("/assets/uPlot.iife.min.js", get(|| asset("text/javascript; charset=utf-8", UPLOT_JS)))
        .route("/assets/uPlot.min.css", get(|| asset("text/css; charset=utf-8", UPLOT_CSS)))
        .route("/assets/uPlot.LICENSE.txt", get(|| asset("text/plain; charset=utf-8", UPLOT_LICENSE)))
        .route("/api/latency-buckets", get(|| async { Json(super::live::bounds_us()) }))
        .route("/api/events", get(events))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn events(State(st): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = st.shared.updates.subscribe();
    let snapshot: Arc<str> = {
        let live = st.shared.live();
        Arc::from(live.update(&st.shared.control, st.shared.recording, true).to_string())
    };
    let mut stop = st.stop.clone();
    let ended = async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                return;
            }
        }
    };
    let updates = BroadcastStream::new(rx).filter_map(|r| std::future::ready(r.ok()));
    let s = stream::once(std::future::ready(snapshot))
        .chain(updates)
        .take_until(ended)
        .map(|data| Ok(Event::default().data(&*data)));
    Sse::new(s).keep_alive(KeepAlive::default())
}
