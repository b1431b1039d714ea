//! Routes of the admin server and the JSON API. Every action calls the
//! daemon's one [`Control`] implementation (the control socket's too), so
//! HTTP and ZeroMQ give the same answers; errors are JSON
//! `{"ok":false,"error":...}` with a status code from the error's class.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

use super::{dashboard, metrics, Shared};
use crate::daemon::control::{error_json, ControlError, ErrorClass};

/// State of every handler.
#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub registry: Arc<prometheus_client::registry::Registry>,
    pub stop: watch::Receiver<bool>,
}

/// All routes, behind the access check.
pub fn router(shared: Arc<Shared>, stop: watch::Receiver<bool>) -> Router {
    let registry = Arc::new(metrics::registry(shared.clone()));
    let state = AppState { shared, registry, stop };
    Router::new()
        .route("/metrics", get(get_metrics))
        .route("/api/status", get(status))
        .route("/api/models", get(models))
        .route("/api/retrain", post(retrain))
        .route("/api/rollback/{generation}", post(rollback))
        .merge(dashboard::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Refuses requests that [`super::auth::check`] refuses.
async fn guard(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let verdict = super::auth::check(peer, req.method(), req.headers(), req.uri().query(), &st.shared.token);
    match verdict {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let mut r = (e.status(), Json(json!({"ok": false, "error": e.to_string()}))).into_response();
            if e.status() == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            }
            r
        }
    }
}

/// The status code of a control error.
pub fn status_code(e: &ControlError) -> StatusCode {
    match e.class() {
        ErrorClass::BadRequest => StatusCode::BAD_REQUEST,
        ErrorClass::NotFound => StatusCode::NOT_FOUND,
        ErrorClass::Conflict => StatusCode::CONFLICT,
        ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn control_error(e: ControlError) -> Response {
    (status_code(&e), Json(error_json(&e))).into_response()
}

fn internal(what: &str) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"ok": false, "error": what}))).into_response()
}

async fn get_metrics(State(st): State<AppState>) -> Response {
    match metrics::render(&st.registry) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
            .into_response(),
        Err(_) => internal("cannot encode the metrics"),
    }
}

async fn status(State(st): State<AppState>) -> Response {
    Json(st.shared.control.status()).into_response()
}

/// Runs a blocking control call off the runtime's thread.
async fn blocking<T, F>(st: &AppState, f: F) -> Result<T, Response>
where
    T: Send + 'static,
    F: FnOnce(&crate::daemon::control::Control) -> Result<T, ControlError> + Send + 'static,
{
    let shared = st.shared.clone();
    match tokio::task::spawn_blocking(move || f(&shared.control)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(control_error(e)),
        Err(_) => Err(internal("the control call panicked")),
    }
}

async fn models(State(st): State<AppState>) -> Response {
    match blocking(&st, |c| c.models()).await {
        Ok(g) => Json(json!({"ok": true, "generations": g})).into_response(),
        Err(r) => r,
    }
}

async fn retrain(State(st): State<AppState>) -> Response {
    match blocking(&st, |c| c.retrain()).await {
        Ok(a) => (StatusCode::ACCEPTED, Json(a)).into_response(),
        Err(r) => r,
    }
}

async fn rollback(State(st): State<AppState>, Path(generation): Path<String>) -> Response {
    let Ok(gen) = generation.parse::<u64>() else {
        return control_error(ControlError::BadGeneration(generation));
    };
    match blocking(&st, move |c| c.rollback(gen)).await {
        Ok(a) => Json(a).into_response(),
        Err(r) => r,
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"ok": false, "error": "no such path; see / for the dashboard, /metrics, /api/status"})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    //! The access check through the real router and middleware, with the
    //! peer address injected (a second machine is not needed to be remote).
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::extract::connect_info::MockConnectInfo;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::admin::live::LiveView;
    use crate::daemon::control::{Control, ControlActions, ControlInfo};
    use crate::daemon::stats::LoopCounters;
    use crate::daemon::telemetry::output_feed;

    const TOKEN: &str = "0123456789abcdef-token";

    struct Off;
    impl ControlActions for Off {
        fn retrain(&self) -> Result<String, ControlError> {
            Err(ControlError::RetrainDisabled)
        }
        fn rollback(&self, gen: u64) -> Result<String, ControlError> {
            Err(ControlError::RollbackDisabled { gen })
        }
    }

    fn app(peer: &str) -> Router {
        let info = ControlInfo {
            channels: 4,
            outputs: 2,
            model_id: Arc::new(Mutex::new("m".into())),
            ingest_endpoint: "i".into(),
            publish_endpoint: "p".into(),
            models_dir: "/nonexistent".into(),
        };
        let control = Arc::new(Control::new(info, Arc::new(LoopCounters::default()), Box::new(Off)));
        let shared = Arc::new(Shared {
            control,
            live: Mutex::new(LiveView::new(output_feed(1).1, 0.02)),
            updates: tokio::sync::broadcast::channel(4).0,
            token: TOKEN.into(),
            recording: false,
        });
        let (_tx, rx) = watch::channel(false);
        router(shared, rx).layer(MockConnectInfo(peer.parse::<SocketAddr>().unwrap()))
    }

    async fn call(app: Router, method: &str, uri: &str, auth: Option<&str>) -> (StatusCode, String) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = auth {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let code = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn non_loopback_without_the_token_gets_401() {
        run(async {
            for path in ["/api/status", "/metrics", "/", "/api/events"] {
                let (code, body) = call(app("192.0.2.10:40000"), "GET", path, None).await;
                assert_eq!(code, StatusCode::UNAUTHORIZED, "{path}");
                assert!(body.contains("bearer token is required"), "{body}");
            }
            let (code, _) = call(app("192.0.2.10:40000"), "POST", "/api/retrain", Some("wrong-token")).await;
            assert_eq!(code, StatusCode::UNAUTHORIZED);
            let (code, body) = call(app("192.0.2.10:40000"), "GET", "/api/status", Some(TOKEN)).await;
            assert_eq!(code, StatusCode::OK, "{body}");
            let (code, _) = call(app("192.0.2.10:40000"), "GET", &format!("/api/status?token={TOKEN}"), None).await;
            assert_eq!(code, StatusCode::OK);
            let (code, body) = call(app("127.0.0.1:40000"), "GET", "/api/status", None).await;
            assert_eq!(code, StatusCode::OK, "{body}");
        });
    }

    #[test]
    fn control_errors_map_to_status_codes_with_json_bodies() {
        run(async {
            let (code, body) = call(app("127.0.0.1:1"), "POST", "/api/retrain", None).await;
            assert_eq!(code, StatusCode::CONFLICT);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v, error_json(&ControlError::RetrainDisabled));
            let (code, _) = call(app("127.0.0.1:1"), "POST", "/api/rollback/abc", None).await;
            assert_eq!(code, StatusCode::BAD_REQUEST);
            let (code, _) = call(app("127.0.0.1:1"), "GET", "/api/rollback/1", None).await;
            assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
        });
    }
}
