//! The HTTP server (hyper 1.x): `/metrics`, `/healthz`, `/readyz`, `/api/v1/models` and
//! the landing page. [`route`] maps a request to a response without a socket, so it is
//! tested directly; [`serve`] runs it on a listener until shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::{base_registry, render, EngineCollector};
use super::{api, page, Shared};
use crate::source::SourceStatus;

pub struct HttpState {
    pub shared: Arc<Mutex<Shared>>,
    pub statuses: Vec<Arc<SourceStatus>>,
    pub collector: EngineCollector,
    pub registry: prometheus::Registry,
    pub telemetry_path: String,
}

impl HttpState {
    pub fn new(
        shared: Arc<Mutex<Shared>>,
        statuses: Vec<Arc<SourceStatus>>,
        telemetry_path: String,
    ) -> HttpState {
        HttpState {
            collector: EngineCollector::new(shared.clone(), statuses.clone()),
            shared,
            statuses,
            registry: base_registry(),
            telemetry_path,
        }
    }
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Maps one request to its response. Only GET and HEAD are served.
pub fn route(
    state: &HttpState,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = response(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET and HEAD are served\n",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut r = match path {
        p if p == state.telemetry_path => match render(&state.collector, &state.registry) {
            Ok(text) => response(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            ),
            Err(e) => response(
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT,
                format!("cannot render metrics: {e}\n"),
            ),
        },
        "/healthz" => response(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" => {
            let down: Vec<String> = state
                .statuses
                .iter()
                .zip(
                    state
                        .shared
                        .lock()
                        .expect("engine lock")
                        .pipeline
                        .sources
                        .iter(),
                )
                .filter(|(s, _)| !s.is_up())
                .map(|(_, c)| c.name.clone())
                .collect();
            if down.is_empty() {
                response(StatusCode::OK, TEXT, "ready\n")
            } else {
                response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    format!("not ready: {} not connected\n", down.join(", ")),
                )
            }
        }
        "/api/v1/models" => {
            let body = serde_json::to_vec(&api::models_json(&state.shared)).expect("json");
            response(StatusCode::OK, "application/json", body)
        }
        "/" => {
            let window = query
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("window=")))
                .unwrap_or("5m")
                .to_string();
            let api = api::models_json(&state.shared);
            response(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page::render_index(&api, env!("CARGO_PKG_VERSION"), &window),
            )
        }
        _ => response(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("not found: {path}; try / or {}\n", state.telemetry_path),
        ),
    };
    if method == Method::HEAD {
        *r.body_mut() = Full::new(Bytes::new());
    }
    r
}

async fn handle(
    state: Arc<HttpState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    // Rendering takes the engine lock and some CPU: keep it off the async workers.
    let r = tokio::task::spawn_blocking(move || route(&state, &method, &path, query.as_deref()))
        .await
        .unwrap_or_else(|e| {
            response(
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT,
                format!("handler failed: {e}\n"),
            )
        });
    Ok(r)
}

/// Serves HTTP on `listener` until `shutdown` is cancelled. Slow clients are cut off
/// after 10 s of not sending their headers; headers are capped at 16 KiB.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::pipeline::{Mode, Pipeline};

    fn state_with(lines: &[&str]) -> HttpState {
        let settings = Settings::default();
        let mut pipeline = Pipeline::new(&settings, Mode::Daemon, None, &["test"]);
        let now = crate::now_ns();
        for l in lines {
            let _ = pipeline.ingest(0, l.as_bytes(), now);
        }
        let status = Arc::new(SourceStatus::default());
        HttpState::new(
            Arc::new(Mutex::new(Shared::new(pipeline))),
            vec![status],
            "/metrics".into(),
        )
    }

    fn body(r: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt;
        let bytes = block_on(r.into_body().collect()).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn metrics_follow_the_contract_names() {
        let s = state_with(&[
            r#"{"model":"m","prediction":"a","label":"a"}"#,
            r#"{"model":"m","prediction":"a","label":"b"}"#,
            r#"{"model":"m","id":1,"prediction":"b"}"#,
            "not json",
        ]);
        let r = route(&s, &Method::GET, "/metrics", None);
        assert_eq!(r.status(), StatusCode::OK);
        let text = body(r);
        for needle in [
            "predmon_events_total{source=\"test\"} 4",
            "predmon_events_rejected_total{source=\"test\",reason=\"invalid_json\"} 1",
            "predmon_samples_total{model=\"m\"} 2",
            "predmon_confusion_total{model=\"m\",actual=\"b\",predicted=\"a\"} 1",
            "predmon_join_pending{model=\"m\",side=\"prediction\"} 1",
            "predmon_accuracy{model=\"m\",window=\"5m\"} 0.5",
            "predmon_precision{model=\"m\",window=\"all\",average=\"micro\"} 0.5",
            "predmon_class_support{model=\"m\",window=\"1m\",class=\"b\"} 1",
            "predmon_alert{model=\"m\",window=\"1h\",alert=\"near_chance\",class=\"\"} 0",
            "predmon_build_info{version=",
            "# TYPE predmon_label_delay_seconds histogram",
            "predmon_source_up{source=\"test\"} 0",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
        }
        assert!(
            !text.contains("predmon_log_loss{"),
            "no scores: no log loss sample"
        );
    }

    #[test]
    fn health_readiness_methods_and_api() {
        let s = state_with(&[r#"{"model":"m","prediction":"a","label":"a"}"#]);
        assert_eq!(
            route(&s, &Method::GET, "/healthz", None).status(),
            StatusCode::OK
        );
        assert_eq!(
            route(&s, &Method::GET, "/readyz", None).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        s.statuses[0].set_up(true);
        assert_eq!(
            route(&s, &Method::GET, "/readyz", None).status(),
            StatusCode::OK
        );
        assert_eq!(
            route(&s, &Method::POST, "/metrics", None).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            route(&s, &Method::GET, "/nope", None).status(),
            StatusCode::NOT_FOUND
        );
        let api: serde_json::Value =
            serde_json::from_str(&body(route(&s, &Method::GET, "/api/v1/models", None))).unwrap();
        assert_eq!(api["windows"]["all"]["models"]["m"]["samples"], 1);
        assert_eq!(api["windows"]["5m"]["window"]["length_seconds"], 300);
        let page = body(route(&s, &Method::GET, "/", None));
        assert!(page.contains("<html") && page.contains(">m<"), "{page}");
        let head = route(&s, &Method::HEAD, "/metrics", None);
        assert_eq!((head.status(), body(head)), (StatusCode::OK, String::new()));
    }

    /// `promtool check metrics` (Debian's prometheus package) lints the exposition.
    #[test]
    fn promtool_finds_no_problem() {
        let Ok(promtool) = which("promtool") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is required under CI=true"
            );
            eprintln!("promtool not installed: skipped (scripts/test.sh installs it)");
            return;
        };
        let s = state_with(&[
            r#"{"model":"m","prediction":"a","label":"a","scores":{"a":0.9}}"#,
            r#"{"model":"m","id":"x","prediction":"b","timestamp":1}"#,
            r#"{"model":"m","id":"x","label":"a","timestamp":3}"#,
        ]);
        let text = body(route(&s, &Method::GET, "/metrics", None));
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && report.trim().is_empty(),
            "promtool check metrics:\n{report}"
        );
    }

    fn which(name: &str) -> Result<std::path::PathBuf, ()> {
        std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join(name))
                    .find(|p| p.is_file())
            })
            .ok_or(())
    }
}
