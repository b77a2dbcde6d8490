//! The HTTP server (hyper 1.x): `/metrics`, `/healthz`, `/readyz`, `/api/v1/models` and
//! the landing page. [`route`] maps a request to a response without a socket, so it is
//! tested directly; [`serve`] runs it on a listener until shutdown, with TLS, basic auth
//! and the limits on slow or oversized requests of [`ServeOptions`].

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::metrics::{base_registry, render, EngineCollector};
use super::web_config::{Verdict, WebConfig, WebGuard, REALM_HEADER};
use super::{api, page, Shared};
use crate::source::SourceStatus;

pub struct HttpState {
    pub shared: Arc<Mutex<Shared>>,
    pub statuses: Vec<Arc<SourceStatus>>,
    pub collector: EngineCollector,
    pub registry: prometheus::Registry,
    pub telemetry_path: String,
    /// The sources' names, in the order of `statuses`: `/readyz` reads them without the
    /// engine lock.
    pub source_names: Vec<String>,
    /// Held while rendering `/metrics`, `/api/v1/models` or the page: at the limits
    /// (100 models, 100 classes, every confusion cell seen) one render takes hundreds of
    /// MB for a moment, so concurrent scrapes take turns instead of adding up.
    pub renders: Mutex<()>,
}

impl HttpState {
    pub fn new(
        shared: Arc<Mutex<Shared>>,
        statuses: Vec<Arc<SourceStatus>>,
        telemetry_path: String,
    ) -> HttpState {
        let source_names = super::lock_for_reading(&shared)
            .pipeline
            .sources
            .iter()
            .map(|s| s.name.clone())
            .collect();
        HttpState {
            source_names,
            collector: EngineCollector::new(shared.clone(), statuses.clone()),
            shared,
            statuses,
            registry: base_registry(),
            telemetry_path,
            renders: Mutex::new(()),
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
    let heavy = path == state.telemetry_path || path == "/api/v1/models" || path == "/";
    // A poisoned lock only means another render panicked; rendering is still safe.
    let _turn = heavy.then(|| state.renders.lock().unwrap_or_else(|e| e.into_inner()));
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
            let down: Vec<&str> = state
                .statuses
                .iter()
                .zip(&state.source_names)
                .filter(|(s, _)| !s.is_up())
                .map(|(_, name)| name.as_str())
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
            let body = api::models_json_bytes(&state.shared);
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
                page::render_index(
                    &api,
                    env!("CARGO_PKG_VERSION"),
                    &window,
                    &state.telemetry_path,
                ),
            )
        }
        _ => response(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("not found: {path}; try / or {}\n", state.telemetry_path),
        ),
    };
    if heavy {
        release_freed_memory();
    }
    if method == Method::HEAD {
        *r.body_mut() = Full::new(Bytes::new());
    }
    r
}

/// Gives the memory a render freed back to the OS. glibc keeps freed memory in per-thread
/// arenas, and renders run on whichever blocking thread is free: without this, renders
/// taking turns on different threads would still add up in RSS, one arena each.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointer and only returns free pages to the OS.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// How the server protects itself: the web configuration and the limits on clients.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub web: WebConfig,
    /// A client that has not sent complete request headers by then is disconnected; this
    /// also bounds how long an idle keep-alive connection is held.
    pub header_read_timeout: Duration,
    /// A client that has not finished the TLS handshake by then is disconnected.
    pub tls_handshake_timeout: Duration,
    /// A client that reads nothing of its response for this long is disconnected.
    pub write_stall_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl ServeOptions {
    pub fn new(web: WebConfig) -> ServeOptions {
        ServeOptions {
            web,
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            // Longer than the others: a real client on a slow network must not be cut
            // off, only one that stopped reading.
            write_stall_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions::new(WebConfig::default())
    }
}

/// Request headers are capped at this size (hyper answers 431 above it).
const MAX_HEADER_BYTES: usize = 16 * 1024;

async fn handle(
    state: Arc<HttpState>,
    guard: Arc<WebGuard>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let mut r = match guard.check(req.headers()).await {
        Verdict::Unauthorized => {
            let mut r = response(StatusCode::UNAUTHORIZED, TEXT, "unauthorized\n");
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(REALM_HEADER));
            r
        }
        Verdict::TooManyRequests => response(
            StatusCode::TOO_MANY_REQUESTS,
            TEXT,
            "too many requests (rate_limit of the web config)\n",
        ),
        // Nothing here takes a body. It is never read: one that is announced is refused
        // and the connection closed, so its bytes are not drained either.
        Verdict::Allow if req.body().size_hint().upper() != Some(0) => {
            let mut r = response(
                StatusCode::PAYLOAD_TOO_LARGE,
                TEXT,
                "request bodies are not accepted; send GET or HEAD without a body\n",
            );
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            r
        }
        Verdict::Allow => {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let query = req.uri().query().map(str::to_string);
            // Rendering takes the engine lock and some CPU: keep it off the async workers.
            tokio::task::spawn_blocking(move || route(&state, &method, &path, query.as_deref()))
                .await
                .unwrap_or_else(|e| {
                    response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        TEXT,
                        format!("handler failed: {e}\n"),
                    )
                })
        }
    };
    for (name, value) in guard.response_headers() {
        r.headers_mut().insert(name.clone(), value.clone());
    }
    Ok(r)
}

/// Serves HTTP (or HTTPS, per `options.web`) on `listener` until `shutdown` is cancelled.
/// Slow clients are cut off (TLS handshake and request headers each have a timeout),
/// headers are capped at 16 KiB, bodies are refused unread, and at most
/// `max_connections` are served at once.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    options: ServeOptions,
    shutdown: CancellationToken,
) {
    let web = &options.web;
    tracing::info!(
        tls = web.tls_enabled(),
        client_certificates = ?web.client_auth(),
        basic_auth = web.basic_auth_enabled(),
        "web configuration"
    );
    if web.basic_auth_enabled() && !web.tls_enabled() {
        tracing::warn!(
            "basic_auth_users without tls_server_config: passwords cross the network in clear text"
        );
    }
    let guard = Arc::new(WebGuard::new(options.web.clone()));
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => return,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
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
        let guard = guard.clone();
        let header_read_timeout = options.header_read_timeout;
        let handshake_timeout = options.tls_handshake_timeout;
        let stream = WriteStallTimeout::new(stream, options.write_stall_timeout);
        tokio::spawn(async move {
            let _slot = slot;
            let Some(acceptor) = guard.tls_acceptor() else {
                serve_connection(stream, state, guard, header_read_timeout).await;
                return;
            };
            let mut stream = stream;
            let handshake = async {
                if !refuse_plain_http(&mut stream).await {
                    return None;
                }
                acceptor
                    .accept(stream)
                    .await
                    .map_err(|e| {
                        // debug: scanners and clients without the right certificate would
                        // otherwise flood the log; PREDMON_LOG=predmon=debug shows them.
                        tracing::debug!(error = %e, "TLS handshake failed");
                    })
                    .ok()
            };
            match tokio::time::timeout(handshake_timeout, handshake).await {
                Ok(Some(tls)) => serve_connection(tls, state, guard, header_read_timeout).await,
                Ok(None) => {}
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
    }
}

/// On a TLS port, a client speaking plain HTTP gets a short 400 naming the problem
/// (as Go's servers do) instead of a TLS alert it cannot read. Returns whether the
/// connection looks like TLS and should go on to the handshake.
async fn refuse_plain_http(stream: &mut WriteStallTimeout<TcpStream>) -> bool {
    let mut first = [0u8; 1];
    match stream.inner.peek(&mut first).await {
        // 0x16: a TLS handshake record, which every ClientHello starts with.
        Ok(1) if first[0] == 0x16 => true,
        Ok(1) if first[0].is_ascii_uppercase() => {
            // Read what already arrived of the request first: closing a socket with unread
            // bytes sends a reset, and the client would lose this answer.
            let mut sink = [0u8; 4096];
            let mut drained = 0;
            while drained < MAX_HEADER_BYTES {
                match stream.inner.try_read(&mut sink) {
                    Ok(n) if n > 0 => drained += n,
                    _ => break,
                }
            }
            let _ = stream
                .write_all(
                    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
                      Connection: close\r\n\r\nthis port serves HTTPS: use https://\n",
                )
                .await;
            let _ = stream.shutdown().await;
            false
        }
        _ => false,
    }
}

/// A stream whose writes fail once they have made no progress for `limit`, so a client
/// that stops reading its response (a slow-read attack) cannot hold its connection, and
/// a connection slot, forever. hyper has no write timeout of its own.
struct WriteStallTimeout<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteStallTimeout<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteStallTimeout {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Called when the inner write is pending: Ready(error) once it has been for `limit`.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        sleep.as_mut().poll(cx).map(|()| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {limit:?}"),
            )
        })
    }

    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_stall(cx).map(Err),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStallTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStallTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progress(cx, r)
    }
}

async fn serve_connection<S>(
    stream: S,
    state: Arc<HttpState>,
    guard: Arc<WebGuard>,
    header_read_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| handle(state.clone(), guard.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::pipeline::{Mode, Pipeline};

    fn state_with(lines: &[&str]) -> HttpState {
        state_with_settings(Settings::default(), lines)
    }

    fn state_with_settings(settings: Settings, lines: &[&str]) -> HttpState {
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

    /// `name{labels}` -> value of every sample in an exposition.
    fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    /// The extensions' gauges (docs/CONTRACT-EXTENSIONS.md) carry the numbers of the
    /// report objects of /api/v1/models, window by window.
    #[test]
    fn extension_metrics_agree_with_the_api() {
        let mut lines = vec![
            r#"{"model":"m","prediction":"a","label":"a","scores":{"a":0.9,"b":0.1}}"#.to_string(),
            r#"{"model":"m","prediction":"b","label":"a","scores":{"a":0.4,"b":0.6}}"#.to_string(),
        ];
        for i in 0..6 {
            let q = 0.3 + i as f64 / 10.0;
            let p = if q >= 0.5 { "a" } else { "b" };
            lines.push(format!(
                r#"{{"model":"m","id":{i},"prediction":"{p}","scores":{{"a":{q},"b":{}}}}}"#,
                1.0 - q
            ));
        }
        lines.push(r#"{"model":"m","id":0,"label":"b"}"#.to_string());
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let s = state_with(&refs);
        let m = samples(&body(route(&s, &Method::GET, "/metrics", None)));
        let api: serde_json::Value =
            serde_json::from_str(&body(route(&s, &Method::GET, "/api/v1/models", None))).unwrap();
        let mut checked = 0;
        for (window, report) in api["windows"].as_object().unwrap() {
            let r = &report["models"]["m"];
            let e = &r["estimated"];
            let at = |name: &str, extra: &str| {
                m.get(&format!("{name}{{model=\"m\",window=\"{window}\"{extra}}}"))
                    .copied()
                    .unwrap_or_else(|| panic!("no {name} for {window}{extra}"))
            };
            assert_eq!(e["unlabelled"], 5);
            assert_eq!(
                at("predmon_estimated_samples", ""),
                e["samples"].as_f64().unwrap()
            );
            assert_eq!(at("predmon_estimated_unlabelled_samples", ""), 5.0);
            assert_eq!(
                at("predmon_estimated_accuracy", ""),
                e["accuracy"].as_f64().unwrap()
            );
            for avg in ["micro", "macro", "weighted"] {
                let extra = format!(",average=\"{avg}\"");
                assert_eq!(
                    at("predmon_estimated_f1", &extra),
                    e[avg]["f1"].as_f64().unwrap()
                );
            }
            for c in ["a", "b"] {
                let extra = format!(",class=\"{c}\"");
                let v = e["classes"][c]["recall"].as_f64().unwrap();
                assert_eq!(at("predmon_estimated_class_recall", &extra), v);
            }
            // E2
            let c = &r["calibration"];
            assert_eq!(c["samples"], 3);
            assert_eq!(
                at("predmon_calibration_error", ""),
                c["ece"].as_f64().unwrap()
            );
            assert_eq!(at("predmon_brier_score", ""), c["brier"].as_f64().unwrap());
            let bin = ",bin=\"0.600\"";
            assert_eq!(
                at("predmon_calibration_bin_samples", bin),
                c["bins"][8]["samples"].as_f64().unwrap()
            );
            assert_eq!(at("predmon_calibration_bin_correct", bin), 0.0);
            assert_eq!(at("predmon_calibration_bin_summed_confidence", bin), 0.6);
            checked += 1;
        }
        assert_eq!(checked, 4);
    }

    /// E3: ROC AUC and PR AUC on /metrics are the report's, for a model with a
    /// positive class; none for a model without.
    #[test]
    fn ranking_metrics_agree_with_the_api() {
        let mut raw = crate::config::RawConfig::default();
        raw.models.push(crate::config::raw::RawModel {
            name: "m".into(),
            classes: Some(vec!["no".into(), "yes".into()]),
            thresholds: vec![0.5, 0.25],
            ..Default::default()
        });
        let settings = Settings::from_raw(raw).unwrap();
        let mut lines = Vec::new();
        for i in 0..40 {
            let s = (i * 37 % 100) as f64 / 100.0;
            let y = if (i * 53 % 100) as f64 / 100.0 < s {
                "yes"
            } else {
                "no"
            };
            lines.push(format!(
                r#"{{"model":"m","prediction":"yes","label":"{y}","scores":[{},{s}]}}"#,
                1.0 - s
            ));
        }
        lines.push(r#"{"model":"other","prediction":"a","label":"a","scores":{"a":1}}"#.into());
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let s = state_with_settings(settings, &refs);
        let text = body(route(&s, &Method::GET, "/metrics", None));
        let m = samples(&text);
        let api: serde_json::Value =
            serde_json::from_str(&body(route(&s, &Method::GET, "/api/v1/models", None))).unwrap();
        for (window, report) in api["windows"].as_object().unwrap() {
            let r = &report["models"]["m"]["ranking"];
            assert_eq!(r["positive_class"], "yes");
            assert_eq!(r["samples"], 40);
            for k in ["roc_auc", "pr_auc"] {
                let key = format!("predmon_{k}{{model=\"m\",window=\"{window}\"}}");
                assert_eq!(m[&key], r[k].as_f64().unwrap(), "{key}");
            }
            assert_eq!(
                report["models"]["other"]["ranking"],
                serde_json::Value::Null
            );
            // E6: ascending thresholds, each with the report's numbers
            let t = &report["models"]["m"]["thresholds"];
            assert_eq!(t[0]["threshold"], 0.25);
            for t in t.as_array().unwrap() {
                let label = t["threshold"].as_f64().unwrap().to_string();
                let key = |name: &str| {
                    format!("predmon_threshold_{name}{{model=\"m\",window=\"{window}\",threshold=\"{label}\"}}")
                };
                assert_eq!(m[&key("f1")], t["f1"].as_f64().unwrap());
                assert_eq!(m[&key("true_positives")], t["tp"].as_f64().unwrap());
                let predicted = t["tp"].as_f64().unwrap() + t["fp"].as_f64().unwrap();
                assert_eq!(m[&key("predicted")], predicted);
            }
        }
        assert!(!text.contains("predmon_roc_auc{model=\"other\""));
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

    /// A peer that stops reading makes writes fail after the limit, and only then.
    #[test]
    fn writes_to_a_client_that_stopped_reading_time_out() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let limit = Duration::from_millis(300);
        block_on_time(async {
            let (ours, mut theirs) = tokio::io::duplex(1024);
            let mut s = WriteStallTimeout::new(ours, limit);
            // Slow but reading: a reader taking 2/3 of the limit per KiB keeps a 5 KiB
            // write going for longer than the limit, and the write completes.
            let reader = tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                for _ in 0..4 {
                    tokio::time::sleep(limit * 2 / 3).await;
                    theirs.read_exact(&mut buf).await.unwrap();
                }
                theirs
            });
            let started = std::time::Instant::now();
            s.write_all(&[0u8; 5 * 1024]).await.unwrap();
            assert!(started.elapsed() > limit, "{:?}", started.elapsed());
            let _theirs = reader.await.unwrap();
            // Not reading: the write fails once the limit has passed, not before.
            let started = std::time::Instant::now();
            let err = s.write_all(&[0u8; 4096]).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
            assert!(started.elapsed() >= limit, "{:?}", started.elapsed());
        });
    }

    fn block_on_time<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
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
