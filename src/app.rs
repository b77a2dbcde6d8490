//! `predmon run`: wires sources -> engine -> HTTP, restores and snapshots state, and
//! shuts down cleanly. One thread owns ingestion (decode, join, aggregate) and takes
//! the engine lock per batch; scrapes take it briefly to copy numbers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::config::{GenerateSource, Settings, SourceConfig};
use crate::event::Rejection;
use crate::export::http::{serve, HttpState, ServeOptions};
use crate::export::web_config::WebConfig;
use crate::export::Shared;
use crate::pipeline::{Mode, Pipeline};
use crate::source::lines::Line;
use crate::source::{self, Batch, SourceContext, SourceStatus};
use crate::state;

/// The configuration `predmon run` uses without `--config`: the built-in demo stream.
pub fn demo_settings() -> Settings {
    let mut raw = crate::config::RawConfig::default();
    raw.sources
        .push(SourceConfig::Generate(GenerateSource::default()));
    // The generator's binary model gets a positive class and two extra thresholds, so
    // that the demo also shows ROC/PR AUC and precision/recall at other thresholds.
    raw.models.push(crate::config::raw::RawModel {
        name: "fraud-v3".into(),
        positive_class: Some("fraud".into()),
        thresholds: vec![0.3, 0.7],
        ..Default::default()
    });
    Settings::from_raw(raw).expect("the demo configuration is valid")
}

/// Batches in flight between the sources and the engine: enough to keep the engine
/// busy while a source refills, few enough to bound memory (each is at most 4 MiB).
/// 4 (16,000 lines, ~10 ms of engine work) ingests a file as fast as 16 did and peaks
/// 11 MB lower: freed batches stay in the allocator's arenas (docs/BENCHMARKS.md).
const CHANNEL_BATCHES: usize = 4;
/// How often pending joins are expired and the watermark follows the wall clock.
const TICK: Duration = Duration::from_millis(500);
/// How long shutdown waits for sources to hand over what they read.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A running daemon's handles, for tests that drive it in-process.
pub struct Running {
    pub local_addr: SocketAddr,
    pub shared: Arc<Mutex<Shared>>,
    pub shutdown: CancellationToken,
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Runs the daemon until SIGINT/SIGTERM.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut settings = match &args.config {
        Some(path) => Settings::load(Some(path))?,
        None => {
            tracing::info!("no --config: running the built-in demo (a generate source); see config/predmon.toml");
            demo_settings()
        }
    };
    if let Some(addr) = args.listen_address {
        settings.server.listen_address = addr;
    }
    if let Some(path) = args.telemetry_path {
        crate::config::check_telemetry_path(&path)
            .map_err(|why| anyhow::anyhow!("--web.telemetry-path: {why}"))?;
        settings.server.telemetry_path = path;
    }
    let web = match &args.web_config {
        Some(path) => WebConfig::load(path)?,
        None => WebConfig::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("predmon")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let running = start_with_web(settings, args.discard_unreadable_state, web).await?;
        let shutdown = running.shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: stop reading, apply what was read, snapshot");
            shutdown.cancel();
        });
        running.done.await.context("the engine task panicked")?
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Starts sources, engine and HTTP server; returns once the listener is bound.
pub async fn start(settings: Settings, discard_unreadable_state: bool) -> anyhow::Result<Running> {
    start_with_web(settings, discard_unreadable_state, WebConfig::default()).await
}

/// [`start`], serving HTTP with the TLS and authentication of `--web.config.file`.
pub async fn start_with_web(
    settings: Settings,
    discard_unreadable_state: bool,
    web: WebConfig,
) -> anyhow::Result<Running> {
    let names: Vec<&str> = settings.sources.iter().map(|s| s.name()).collect();
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(**n)) {
        anyhow::bail!(
            "sources: the name `{dup}` is used twice; give each [[sources]] a distinct `name`"
        );
    }
    let mut shared = Shared::new(Pipeline::new(&settings, Mode::Daemon, None, &names));
    if let Some(st) = &settings.state {
        match state::restore(&st.path, &mut shared) {
            Ok(true) => tracing::info!(path = %st.path.display(), "restored state"),
            Ok(false) => {
                tracing::info!(path = %st.path.display(), "no state snapshot yet: starting fresh")
            }
            Err(e) if discard_unreadable_state && !matches!(e, state::StateError::Read { .. }) => {
                let aside = state::set_aside(&st.path).with_context(|| {
                    format!(
                        "cannot move the unreadable snapshot {} aside",
                        st.path.display()
                    )
                })?;
                tracing::warn!(error = %e, kept = %aside.display(), "starting fresh; the unreadable snapshot was kept");
                shared = Shared::new(Pipeline::new(&settings, Mode::Daemon, None, &names));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let positions = shared.positions.clone();
    let shared = Arc::new(Mutex::new(shared));
    let shutdown = CancellationToken::new();
    let statuses: Vec<Arc<SourceStatus>> = settings
        .sources
        .iter()
        .map(|_| Arc::new(SourceStatus::default()))
        .collect();

    let listener = tokio::net::TcpListener::bind(&settings.server.listen_address)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (server.listen_address / --web.listen-address)",
                settings.server.listen_address
            )
        })?;
    let local_addr = listener.local_addr()?;
    tracing::info!(address = %local_addr, path = %settings.server.telemetry_path, "serving metrics");
    let http = Arc::new(HttpState::new(
        shared.clone(),
        statuses.clone(),
        settings.server.telemetry_path.clone(),
    ));
    let http_shutdown = CancellationToken::new();
    let http_task = tokio::spawn(serve(
        listener,
        http,
        ServeOptions::new(web),
        http_shutdown.clone(),
    ));

    let (tx, rx) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
    // With `[state]`, each source learns which of its positions reached the disk.
    let durables: Vec<(String, Arc<source::Durable>)> = if settings.state.is_some() {
        settings
            .sources
            .iter()
            .map(|c| (c.name().to_string(), Arc::default()))
            .collect()
    } else {
        Vec::new()
    };
    let mut source_tasks = Vec::new();
    for (index, config) in settings.sources.iter().enumerate() {
        let ctx = SourceContext {
            index,
            name: config.name().to_string(),
            max_event_bytes: settings.limits.max_event_bytes,
            tx: tx.clone(),
            restored: positions.get(config.name()).cloned(),
            status: statuses[index].clone(),
            shutdown: shutdown.clone(),
            durable: durables.get(index).map(|(_, d)| d.clone()),
        };
        let name = config.name().to_string();
        let status = statuses[index].clone();
        let task = match config.clone() {
            SourceConfig::File(c) => tokio::spawn(source::file::run(c, ctx)),
            SourceConfig::Kafka(c) => tokio::spawn(source::kafka::run(c, ctx)),
            SourceConfig::Generate(c) => tokio::spawn(source::generate::run(c, ctx)),
        };
        source_tasks.push(tokio::spawn(async move {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    status.set_up(false);
                    tracing::error!(source = %name, error = %format!("{e:#}"), "source stopped");
                }
                Err(e) => {
                    status.set_up(false);
                    tracing::error!(source = %name, error = %e, "source panicked");
                }
            }
        }));
    }
    drop(tx); // the engine sees the channel close once every source has returned

    let engine_shared = shared.clone();
    let engine_shutdown = shutdown.clone();
    let state_settings = settings.state.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("predmon-engine".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let result = match rt {
                Ok(rt) => rt.block_on(engine_loop(
                    engine_shared,
                    rx,
                    engine_shutdown,
                    state_settings,
                    durables,
                )),
                Err(e) => Err(anyhow::anyhow!("cannot start the engine runtime: {e}")),
            };
            let _ = done_tx.send(result);
        })
        .context("cannot start the engine thread")?;

    let done = tokio::spawn(async move {
        let result = done_rx
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the engine thread died")));
        for t in source_tasks {
            t.abort();
        }
        http_shutdown.cancel();
        let _ = http_task.await;
        result
    });
    Ok(Running {
        local_addr,
        shared,
        shutdown,
        done,
    })
}

/// Applies one batch under the lock and records the source's position with it.
pub fn apply_batch(shared: &Mutex<Shared>, mut batch: Batch) {
    let arrival = if batch.arrival_ns > 0 {
        batch.arrival_ns
    } else {
        crate::now_ns()
    };
    crate::export::yield_to_readers();
    {
        let mut guard = shared.lock().expect("engine lock poisoned");
        let s = &mut *guard;
        for line in batch.iter() {
            match line {
                Line::Event(bytes) => {
                    let _ = s.pipeline.ingest(batch.source, bytes, arrival);
                }
                Line::TooLarge => s.pipeline.reject(batch.source, Rejection::TooLarge),
            }
        }
        if let Some(position) = batch.position.take() {
            let name = s.pipeline.sources[batch.source].name.clone();
            s.positions.insert(name, position);
        }
    }
    if let Some(ack) = batch.on_applied.take() {
        ack();
    }
}

async fn engine_loop(
    shared: Arc<Mutex<Shared>>,
    mut rx: mpsc::Receiver<Batch>,
    shutdown: CancellationToken,
    state_settings: Option<crate::config::StateSettings>,
    durables: Vec<(String, Arc<source::Durable>)>,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(TICK);
    let snapshot_every = state_settings
        .as_ref()
        .map_or(Duration::from_secs(3600), |s| s.interval);
    let mut snapshot_timer =
        tokio::time::interval_at(tokio::time::Instant::now() + snapshot_every, snapshot_every);
    let mut grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut failures = FailureLog::default();
    loop {
        tokio::select! {
            biased;
            batch = rx.recv() => match batch {
                Some(mut batch) if batch.snapshot && state_settings.is_some() => {
                    // Applied, snapshotted, then acknowledged: a Kafka source commits
                    // its offsets only once they are on disk.
                    let ack = batch.on_applied.take();
                    apply_batch(&shared, batch);
                    snapshot(&shared, state_settings.as_ref().expect("checked"), &mut failures, &durables);
                    if let Some(ack) = ack {
                        ack();
                    }
                }
                Some(batch) => apply_batch(&shared, batch),
                None => break, // every source has stopped
            },
            _ = shutdown.cancelled(), if grace.is_none() => {
                grace = Some(Box::pin(tokio::time::sleep(SHUTDOWN_GRACE)));
            }
            _ = async { grace.as_mut().expect("armed").await }, if grace.is_some() => {
                tracing::warn!("sources did not stop within {SHUTDOWN_GRACE:?}; applying what arrived");
                while let Ok(batch) = rx.try_recv() {
                    apply_batch(&shared, batch);
                }
                break;
            }
            _ = tick.tick() => {
                shared.lock().expect("engine lock poisoned").pipeline.tick(crate::now_ns());
            }
            _ = snapshot_timer.tick(), if state_settings.is_some() => {
                snapshot(&shared, state_settings.as_ref().expect("checked"), &mut failures, &durables);
            }
        }
    }
    if let Some(st) = &state_settings {
        snapshot(&shared, st, &mut failures, &durables);
    }
    Ok(())
}

/// How often failed snapshots are logged while they keep failing.
const SNAPSHOT_FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Snapshot failures come every interval while a disk is full: the first of a run of
/// failures is logged, then at most one a minute, and the recovery once.
#[derive(Default)]
struct FailureLog {
    /// Failures since the last success, and when one was last logged.
    failing: u64,
    logged_at: Option<std::time::Instant>,
}

/// Streams a snapshot to its file (see [`state::write_snapshot`] for how it holds the
/// engine lock); once the file is durable, tells each source the position it holds
/// (`durables`). A failed write is counted and logged; ingestion goes on and the
/// previous snapshot stays valid.
fn snapshot(
    shared: &Mutex<Shared>,
    st: &crate::config::StateSettings,
    log: &mut FailureLog,
    durables: &[(String, Arc<source::Durable>)],
) {
    // The positions the snapshot will hold: this runs on the engine thread, the only
    // one that applies batches, so they cannot move until the snapshot is written.
    let positions = shared
        .lock()
        .expect("engine lock poisoned")
        .positions
        .clone();
    let result = state::write_snapshot(&st.path, shared);
    if let Ok(stats) = &result {
        tracing::debug!(
            bytes = stats.bytes,
            total_ms = stats.total.as_secs_f64() * 1e3,
            held_ms = stats.held.as_secs_f64() * 1e3,
            longest_hold_ms = stats.longest_hold.as_secs_f64() * 1e3,
            holds = stats.holds,
            rewritten = stats.rewritten,
            "state snapshot written"
        );
        for (name, durable) in durables {
            if let Some(position) = positions.get(name) {
                durable.publish(position.clone());
            }
        }
    }
    let mut s = shared.lock().expect("engine lock poisoned");
    match result {
        Ok(_) => {
            s.snapshot_last_success = Some(crate::now_ns() as f64 / 1e9);
            if log.failing > 0 {
                tracing::info!(path = %st.path.display(), failed = log.failing, "state snapshots succeed again");
            }
            *log = FailureLog::default();
        }
        Err(e) => {
            s.snapshot_failures += 1;
            log.failing += 1;
            let due = log
                .logged_at
                .is_none_or(|at| at.elapsed() >= SNAPSHOT_FAILURE_LOG_EVERY);
            if due {
                log.logged_at = Some(std::time::Instant::now());
                tracing::error!(error = %e, failing = log.failing, failures_total = s.snapshot_failures,
                    "state snapshot failed; ingestion goes on and the previous snapshot stays valid (logged at most once a minute)");
            }
        }
    }
}
