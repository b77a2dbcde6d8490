//! Tests of the generator core against the scenario it promises, and of the daemon source.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::Settings;
use crate::engine::alerts::AlertKind;
use crate::engine::ScopeId;
use crate::pipeline::{Mode, Pipeline};
use crate::source::SourceStatus;

/// 2025-06-15T15:06:40.123456789Z.
const T0: i64 = 1_750_000_000_123_456_789;
const SECOND: i64 = 1_000_000_000;

fn scenario() -> GenerateSource {
    GenerateSource::default()
}

/// Runs a paced generator over simulated time in 100 ms steps until `events` are out.
fn paced_lines(config: &GenerateSource, events: u64) -> Vec<String> {
    let mut gen = Generator::new(config).with_limit(events);
    let mut out = Vec::new();
    let mut now = T0;
    while !gen.is_done() {
        gen.emit(now, usize::MAX, &mut out);
        now += SECOND / 10;
    }
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn time_ns(v: &Value) -> i64 {
    let text = v["timestamp"].as_str().expect("a timestamp");
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    t.unix_timestamp_nanos() as i64
}

/// (model, actual, predicted) of every completed sample, joined by (model, id).
fn samples(lines: &[String]) -> Vec<(String, String, String)> {
    let mut predictions: HashMap<(String, String), String> = HashMap::new();
    let mut out = Vec::new();
    for line in lines {
        let v = parse(line);
        let key = (
            v["model"].as_str().unwrap().to_string(),
            v["id"].to_string(),
        );
        match (v["prediction"].as_str(), v["label"].as_str()) {
            (Some(p), Some(l)) => out.push((key.0, l.into(), p.into())),
            (Some(p), None) => {
                assert!(predictions.insert(key, p.into()).is_none(), "{line}");
            }
            (None, Some(l)) => {
                let p = predictions.remove(&key).expect("the prediction came first");
                out.push((key.0, l.into(), p));
            }
            _ => panic!("neither half: {line}"),
        }
    }
    out
}

#[test]
fn the_same_seed_gives_the_same_stream() {
    let a = paced_lines(&scenario(), 5_000);
    assert_eq!(a, paced_lines(&scenario(), 5_000));
    let other = GenerateSource {
        seed: 43,
        ..scenario()
    };
    assert_ne!(a, paced_lines(&other, 5_000));
}

#[test]
fn events_look_as_documented() {
    let lines = paced_lines(&scenario(), 2_000);
    let first = &lines[0];
    assert!(first.starts_with("{\"model\":\""), "{first}");
    assert!(first.contains("\",\"id\":\""), "{first}");
    // The first event is due at the start of the schedule, stamped to the microsecond.
    assert!(
        first.ends_with(",\"timestamp\":\"2025-06-15T15:06:40.123456Z\"}"),
        "{first}"
    );
    let ids = ["tx-", "cust-", "msg-"];
    for line in &lines {
        let v = parse(line);
        let model = v["model"].as_str().unwrap();
        let id = v["id"].as_str().unwrap();
        let i = ["fraud-v3", "churn-v2", "intent-router"]
            .iter()
            .position(|m| *m == model)
            .unwrap();
        assert!(id.starts_with(ids[i]), "{line}");
        assert_eq!(time_ns(&v) % 1_000, 0);
    }
    let with_run = Generator::new(&scenario()).with_run_token("k3f9qa");
    let mut out = Vec::new();
    let mut gen = with_run.with_limit(1);
    gen.emit(T0, 1, &mut out);
    let v = parse(std::str::from_utf8(&out).unwrap().trim_end());
    assert!(v["id"].as_str().unwrap().ends_with("-k3f9qa-1"), "{v}");
    assert_ne!(run_token("a"), run_token("b"));
}

#[test]
fn models_and_classes_follow_the_scenario() {
    let config = GenerateSource {
        models: 5,
        classes: 6,
        ..scenario()
    };
    let gen = Generator::new(&config);
    assert_eq!(
        gen.model_names(),
        [
            "fraud-v3",
            "churn-v2",
            "intent-router",
            "model-4",
            "model-5"
        ]
    );
    let lines = paced_lines(&config, 20_000);
    let mut classes: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for (model, actual, predicted) in samples(&lines) {
        let set = classes.entry(model).or_default();
        set.insert(actual);
        set.insert(predicted);
    }
    assert_eq!(classes["fraud-v3"].len(), 2);
    assert!(classes["fraud-v3"].contains("legit") && classes["fraud-v3"].contains("fraud"));
    for m in ["churn-v2", "intent-router", "model-4", "model-5"] {
        assert_eq!(classes[m].len(), 6, "{m}: {:?}", classes[m]);
    }
    assert!(classes["model-4"].contains("class-6"));
}

#[test]
fn the_collapsed_model_predicts_its_majority_class() {
    let lines = paced_lines(&scenario(), 120_000);
    let fraud: Vec<_> = samples(&lines)
        .into_iter()
        .filter(|s| s.0 == "fraud-v3")
        .collect();
    assert!(fraud.len() > 15_000, "{}", fraud.len());
    let n = fraud.len() as f64;
    let legit_share = fraud.iter().filter(|s| s.2 == "legit").count() as f64 / n;
    assert!((legit_share - COLLAPSE_SHARE).abs() < 0.01, "{legit_share}");
    let minority: Vec<_> = fraud.iter().filter(|s| s.1 == "fraud").collect();
    let recall = minority.iter().filter(|s| s.2 == "fraud").count() as f64 / minority.len() as f64;
    assert!(recall < 0.1, "{recall}");
    // Zipf with exponent 1 over two classes: 2/3 legit.
    let legit_support = fraud.iter().filter(|s| s.1 == "legit").count() as f64 / n;
    assert!((legit_support - 2.0 / 3.0).abs() < 0.02, "{legit_support}");
}

#[test]
fn healthy_models_have_the_configured_accuracy() {
    for accuracy in [0.85, 0.6] {
        let config = GenerateSource {
            accuracy,
            ..scenario()
        };
        let all = samples(&paced_lines(&config, 120_000));
        for model in ["churn-v2", "intent-router"] {
            let s: Vec<_> = all.iter().filter(|s| s.0 == model).collect();
            let correct = s.iter().filter(|s| s.1 == s.2).count() as f64 / s.len() as f64;
            assert!((correct - accuracy).abs() < 0.02, "{model}: {correct}");
            // Every class is recalled alike, so none collapses.
            let mut per_class: HashMap<&str, (u32, u32)> = HashMap::new();
            for (_, actual, predicted) in &s {
                let e = per_class.entry(actual).or_default();
                e.0 += 1;
                e.1 += u32::from(actual == predicted);
            }
            for (class, (support, hits)) in per_class {
                let recall = f64::from(hits) / f64::from(support);
                assert!(
                    (recall - accuracy).abs() < 0.06,
                    "{model}/{class}: {recall}"
                );
            }
        }
    }
}

#[test]
fn every_prediction_gets_one_label_label_delay_later() {
    for delay in ["2s", "750ms", "1h"] {
        let config = GenerateSource {
            label_delay: delay.into(),
            rate: 5_000.0,
            ..scenario()
        };
        let delay_ns = label_delay(&config).unwrap().as_nanos() as i64;
        // Unpaced too: there the labels of the last samples are not waited for.
        for paced in [true, false] {
            let lines = if paced {
                paced_lines(&config, 20_000)
            } else {
                let mut gen = Generator::new(&GenerateSource {
                    rate: 0.0,
                    ..config.clone()
                })
                .with_limit(20_000);
                let mut out = Vec::new();
                while !gen.is_done() {
                    gen.emit(T0, 1_000, &mut out);
                }
                String::from_utf8(out)
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect()
            };
            assert_eq!(lines.len(), 20_000);
            let mut open: HashMap<(String, String), i64> = HashMap::new();
            let mut last_ns = i64::MIN;
            for line in &lines {
                let v = parse(line);
                let key = (v["model"].to_string(), v["id"].to_string());
                let t = time_ns(&v);
                assert!(t >= last_ns, "timestamps never go back: {line}");
                last_ns = t;
                match (v.get("prediction"), v.get("label")) {
                    (Some(_), None) => assert!(open.insert(key, t).is_none(), "{line}"),
                    (None, Some(_)) => {
                        let p = open.remove(&key).expect("one label per prediction");
                        assert_eq!(t - p, delay_ns, "{delay} {paced}: {line}");
                    }
                    _ => panic!("split events expected: {line}"),
                }
            }
            assert!(
                open.is_empty(),
                "{delay} {paced}: {} without label",
                open.len()
            );
        }
    }
}

#[test]
fn without_delay_every_sample_is_one_event() {
    let config = GenerateSource {
        label_delay: "0s".into(),
        ..scenario()
    };
    let lines = paced_lines(&config, 1_000);
    assert_eq!(lines.len(), 1_000);
    for line in &lines {
        let v = parse(line);
        assert!(
            v.get("prediction").is_some() && v.get("label").is_some(),
            "{line}"
        );
    }
}

#[test]
fn scores_are_valid_and_roughly_calibrated() {
    let config = GenerateSource {
        models: 4,
        classes: 7,
        ..scenario()
    };
    let lines = paced_lines(&config, 60_000);
    let mut classes: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for (model, actual, predicted) in samples(&lines) {
        let set = classes.entry(model).or_default();
        set.insert(actual);
        set.insert(predicted);
    }
    let (mut predictions, mut scored) = (0, 0);
    // Healthy scored predictions waiting for their label: (top p, predicted class).
    let mut waiting: HashMap<String, (f64, String)> = HashMap::new();
    let (mut top_sum, mut joined, mut hits) = (0.0, 0u32, 0u32);
    for line in &lines {
        let v = parse(line);
        let model = v["model"].as_str().unwrap();
        let key = format!("{model}/{}", v["id"]);
        if let Some(p) = v["prediction"].as_str() {
            predictions += 1;
            let Some(scores) = v.get("scores") else {
                continue;
            };
            scored += 1;
            let scores = scores.as_object().expect("scores are an object");
            let keys: std::collections::BTreeSet<String> = scores.keys().cloned().collect();
            assert_eq!(keys, classes[model], "{line}");
            let mut sum = 0.0;
            for x in scores.values() {
                let x = x.as_f64().unwrap();
                assert!(x > 0.0 && x <= 1.0, "in (0, 1]: {line}");
                sum += x;
            }
            assert!((sum - 1.0).abs() < 1e-9, "{sum}: {line}");
            let top = scores[p].as_f64().unwrap();
            for (k, x) in scores {
                assert!(k == p || x.as_f64().unwrap() < top, "{line}");
            }
            if model != "fraud-v3" {
                waiting.insert(key, (top, p.to_string()));
            }
        } else if let Some((top, predicted)) = waiting.remove(&key) {
            top_sum += top;
            joined += 1;
            hits += u32::from(v["label"].as_str().unwrap() == predicted);
        }
    }
    let share = f64::from(scored) / f64::from(predictions);
    assert!((share - 0.5).abs() < 0.02, "{share}");
    // Calibrated: the mean probability of the predicted class is its accuracy.
    let mean_top = top_sum / f64::from(joined);
    let accuracy = f64::from(hits) / f64::from(joined);
    assert!(
        (mean_top - accuracy).abs() < 0.02,
        "{mean_top} vs {accuracy}"
    );
    assert!((mean_top - 0.85).abs() < 0.02, "{mean_top}");
}

#[test]
fn rate_pacing_is_in_events_per_second() {
    // Complete events: one per sample, from the first second on.
    let config = GenerateSource {
        rate: 200.0,
        label_delay: "0s".into(),
        ..scenario()
    };
    let mut gen = Generator::new(&config);
    let mut out = Vec::new();
    let first = gen.emit(T0, usize::MAX, &mut out);
    assert_eq!(first, 1, "the first event is due at once");
    let n = first + gen.emit(T0 + SECOND, usize::MAX, &mut out);
    assert!((199..=201).contains(&n), "{n}");

    // Split events: predictions at 100/s, and once labels flow, 200 events/s in total.
    let config = GenerateSource {
        rate: 200.0,
        ..scenario()
    };
    let mut gen = Generator::new(&config);
    let mut now = T0;
    let mut in_first_second = 0;
    while now <= T0 + 10 * SECOND {
        let n = gen.emit(now, usize::MAX, &mut out);
        if now <= T0 + SECOND {
            in_first_second += n;
        }
        now += SECOND / 10;
    }
    assert!((100..=102).contains(&in_first_second), "{in_first_second}");
    let mut n = 0;
    while now <= T0 + 11 * SECOND {
        n += gen.emit(now, usize::MAX, &mut out);
        now += SECOND / 10;
    }
    assert!((198..=202).contains(&n), "{n}");
    // `max` caps one call; the rest stays due.
    assert_eq!(gen.emit(now + SECOND, 10, &mut out), 10);
}

#[test]
fn a_generator_far_behind_skips_instead_of_bursting() {
    let config = GenerateSource {
        rate: 1_000.0,
        ..scenario()
    };
    let mut gen = Generator::new(&config);
    let mut out = Vec::new();
    gen.emit(T0, usize::MAX, &mut out);
    // A minute asleep: the labels of what was sent still come, the missed samples do not.
    let n = gen.emit(T0 + 60 * SECOND, usize::MAX, &mut out);
    assert!(n < 10, "{n}");
    let n = gen.emit(T0 + 61 * SECOND, usize::MAX, &mut out);
    assert!((495..=505).contains(&n), "{n}");
}

#[test]
fn unpaced_keeps_the_labels_in_flight_bounded() {
    let config = GenerateSource {
        rate: 0.0,
        label_delay: "1h".into(),
        ..scenario()
    };
    let mut gen = Generator::new(&config);
    let mut out = Vec::new();
    let mut now = T0;
    for _ in 0..60 {
        gen.emit(now, 4_096, &mut out);
        assert!(gen.in_flight() <= MAX_IN_FLIGHT);
        now += 1_000_000;
    }
    assert_eq!(gen.emitted(), 60 * 4_096);
    let text = String::from_utf8(out).unwrap();
    let labels = text.lines().filter(|l| l.contains("\"label\"")).count();
    assert!(labels > 60_000, "{labels}");
    let mut last = i64::MIN;
    for line in text.lines() {
        let t = time_ns(&parse(line));
        assert!(t >= last);
        last = t;
    }
}

#[test]
fn a_limit_gives_exactly_that_many_events_all_complete() {
    for (rate, delay, limit) in [
        (0.0, "2s", 1_001),
        (0.0, "2s", 1_000),
        (0.0, "0s", 7),
        (500.0, "2s", 999),
        (500.0, "1s", 1),
        (500.0, "1s", 0),
    ] {
        let config = GenerateSource {
            rate,
            label_delay: delay.into(),
            ..scenario()
        };
        let mut gen = Generator::new(&config).with_limit(limit);
        let mut out = Vec::new();
        let mut now = T0;
        for _ in 0..10_000 {
            if gen.is_done() {
                break;
            }
            gen.emit(now, 64, &mut out);
            now += SECOND / 10;
        }
        assert!(gen.is_done());
        assert_eq!(gen.emit(now, 64, &mut out), 0);
        let lines: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(lines.len() as u64, limit, "{rate} {delay}");
        let complete = samples(&lines).len();
        let halves = lines
            .iter()
            .filter(|l| !(l.contains("\"prediction\"") && l.contains("\"label\"")))
            .count();
        assert_eq!(complete, lines.len() - halves / 2, "{rate} {delay} {limit}");
        assert_eq!(gen.in_flight(), 0);
    }
}

#[test]
fn the_pipeline_fires_the_collapse_alerts_on_the_collapsed_model_only() {
    let lines = paced_lines(&scenario(), 30_000);
    let settings = Settings::default();
    let mut pipeline = Pipeline::new(&settings, Mode::Report, None, &["gen"]);
    for line in &lines {
        pipeline
            .ingest(0, line.as_bytes(), T0)
            .unwrap_or_else(|why| panic!("{why:?}: {line}"));
    }
    assert_eq!(pipeline.sources[0].accepted(), 30_000);
    assert_eq!(pipeline.join.len(), 0, "every half found its other half");
    let alerts = |pipeline: &mut Pipeline, model: &str| -> Vec<(AlertKind, String)> {
        let id = pipeline.engine.model_id(model).expect(model);
        let stats = pipeline.engine.model_stats(id, ScopeId::All);
        assert!(stats.samples > 3_000, "{model}: {}", stats.samples);
        let m = pipeline.engine.model(id);
        stats
            .alerts
            .iter()
            .map(|a| {
                let class = a
                    .class
                    .map(|c| m.class_name(c).to_string())
                    .unwrap_or_default();
                (a.kind, class)
            })
            .collect()
    };
    let fraud = alerts(&mut pipeline, "fraud-v3");
    for expected in [
        (AlertKind::RecallCollapse, "fraud"),
        (AlertKind::PredictionCollapse, "legit"),
        (AlertKind::NearChance, ""),
    ] {
        assert!(
            fraud.iter().any(|(k, c)| (*k, c.as_str()) == expected),
            "{expected:?} in {fraud:?}"
        );
    }
    for model in ["churn-v2", "intent-router"] {
        let fired = alerts(&mut pipeline, model);
        assert!(
            !fired.iter().any(|(k, _)| matches!(
                k,
                AlertKind::RecallCollapse | AlertKind::PredictionCollapse | AlertKind::NearChance
            )),
            "{model}: {fired:?}"
        );
    }
}

fn context(tx: mpsc::Sender<Batch>) -> SourceContext {
    SourceContext {
        index: 3,
        name: "generate".into(),
        max_event_bytes: 1 << 20,
        tx,
        restored: None,
        status: Arc::new(SourceStatus::default()),
        shutdown: CancellationToken::new(),
        durable: None,
    }
}

#[tokio::test]
async fn the_source_sends_batches_and_stops_on_shutdown() {
    for rate in [2_000.0, 0.0] {
        let (tx, mut rx) = mpsc::channel(4);
        let ctx = context(tx);
        let (status, shutdown) = (ctx.status.clone(), ctx.shutdown.clone());
        let config = GenerateSource { rate, ..scenario() };
        let task = tokio::spawn(run(config, ctx));
        let batch = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .expect("a batch within 2 s")
            .expect("the source is running");
        assert!(status.is_up());
        assert_eq!(batch.source, 3);
        assert!(batch.position.is_none());
        assert!(batch.arrival_ns > 0);
        if rate == 0.0 {
            assert_eq!(batch.len(), BATCH_LINES, "unpaced batches are full");
        } else {
            // ~100 ms worth of predictions at 1,000 samples/s.
            assert!(batch.len() <= 300, "{}", batch.len());
        }
        for line in batch.iter() {
            let crate::source::lines::Line::Event(bytes) = line else {
                panic!("a generated line is never too large");
            };
            let v: Value = serde_json::from_slice(bytes).unwrap();
            assert!(v["id"].is_string());
        }
        shutdown.cancel();
        // Drain while it stops, as the engine does.
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("stops promptly")
            .unwrap()
            .unwrap();
        assert!(!status.is_up());
        drain.await.unwrap();
    }
}
