//! One test per rejection reason of contract Section 1: each is counted once, under
//! exactly its reason, and changes no metric.

use predmon::config::raw::{RawConfig, RawModel};
use predmon::config::Settings;
use predmon::event::Rejection;
use predmon::pipeline::{Mode, Pipeline};
use predmon::report::scope_json;
use predmon::source::lines::{Line, LineSplitter};

fn pipeline(edit: impl FnOnce(&mut RawConfig)) -> Pipeline {
    let mut raw = RawConfig::default();
    edit(&mut raw);
    Pipeline::new(
        &Settings::from_raw(raw).unwrap(),
        Mode::Report,
        None,
        &["t"],
    )
}

/// Feeds `setup` (all accepted), then `line`, and checks it is rejected for `why`
/// without changing the report.
fn assert_rejected(mut p: Pipeline, setup: &[&str], line: &[u8], why: Rejection) {
    for l in setup {
        assert_eq!(p.ingest(0, l.as_bytes(), 0), Ok(()), "setup line {l}");
    }
    let before = scope_json(&mut p, predmon::engine::ScopeId::All)["models"].clone();
    assert_eq!(
        p.ingest(0, line, 0),
        Err(why),
        "{}",
        String::from_utf8_lossy(line)
    );
    assert_eq!(p.sources[0].rejected[why.index()], 1);
    assert_eq!(
        p.sources[0].rejected.iter().sum::<u64>(),
        1,
        "counted under one reason only"
    );
    assert_eq!(
        scope_json(&mut p, predmon::engine::ScopeId::All)["models"],
        before
    );
}

#[test]
fn invalid_json() {
    assert_rejected(
        pipeline(|_| {}),
        &[],
        br#"{"prediction": 1,"#,
        Rejection::InvalidJson,
    );
}

#[test]
fn not_an_object() {
    assert_rejected(
        pipeline(|_| {}),
        &[],
        b"[{\"prediction\":1,\"label\":1}]",
        Rejection::NotAnObject,
    );
}

#[test]
fn too_large_line_is_cut_by_the_splitter_and_the_stream_goes_on() {
    let mut p = pipeline(|r| r.limits.max_event_bytes = 40);
    let mut splitter = LineSplitter::new(40);
    let input = format!(
        "{}\n{{\"prediction\":1,\"label\":1}}\n{}\n",
        format_args!(
            "{{\"prediction\":1,\"label\":1,\"pad\":\"{}\"}}",
            "x".repeat(100)
        ),
        "{\"prediction\":2,\"label\":2}"
    );
    splitter.feed(input.as_bytes(), |line| match line {
        Line::Event(b) => {
            let _ = p.ingest(0, b, 0);
        }
        Line::TooLarge => p.reject(0, Rejection::TooLarge),
    });
    assert_eq!(p.sources[0].read, 3);
    assert_eq!(p.sources[0].rejected[Rejection::TooLarge.index()], 1);
    assert_eq!(p.engine.model(0).samples(), 2);
    // Valid JSON over the limit is too large as well, when handed over whole.
    assert_rejected(
        pipeline(|r| r.limits.max_event_bytes = 20),
        &[],
        br#"{"prediction":1,"label":1}"#,
        Rejection::TooLarge,
    );
}

#[test]
fn invalid_utf8_wins_over_invalid_json() {
    assert_rejected(
        pipeline(|_| {}),
        &[],
        b"{\"prediction\":\"\xc3\x28\",",
        Rejection::InvalidUtf8,
    );
}

#[test]
fn missing_id() {
    assert_rejected(
        pipeline(|_| {}),
        &[],
        br#"{"prediction":"a"}"#,
        Rejection::MissingId,
    );
}

#[test]
fn no_prediction_or_label() {
    assert_rejected(
        pipeline(|_| {}),
        &[],
        br#"{"model":"m","id":1}"#,
        Rejection::NoPredictionOrLabel,
    );
}

#[test]
fn bad_class() {
    assert_rejected(
        pipeline(|_| {}),
        &[],
        br#"{"prediction":2.0,"label":2}"#,
        Rejection::BadClass,
    );
}

#[test]
fn bad_scores() {
    assert_rejected(
        pipeline(|_| {}),
        &[],
        br#"{"prediction":"a","label":"a","scores":{"a":-0.1}}"#,
        Rejection::BadScores,
    );
}

#[test]
fn bad_timestamp() {
    assert_rejected(
        pipeline(|_| {}),
        &[],
        br#"{"prediction":"a","label":"a","timestamp":"2024-13-01T00:00:00Z"}"#,
        Rejection::BadTimestamp,
    );
}

#[test]
fn duplicate_id_keeps_the_first() {
    let p = pipeline(|_| {});
    assert_rejected(
        p,
        &[r#"{"id":1,"prediction":"a"}"#],
        br#"{"id":"1","prediction":"b"}"#,
        Rejection::DuplicateId,
    );
    // The first is kept: the label completes it with prediction "a".
    let mut p = pipeline(|_| {});
    for l in [
        r#"{"id":1,"prediction":"a"}"#,
        r#"{"id":1,"prediction":"b"}"#,
        r#"{"id":1,"label":"a"}"#,
    ] {
        let _ = p.ingest(0, l.as_bytes(), 0);
    }
    let r = scope_json(&mut p, predmon::engine::ScopeId::All);
    assert_eq!(r["models"]["default"]["confusion"]["a"]["a"], 1);
}

#[test]
fn unknown_class() {
    let p = pipeline(|r| {
        r.models.push(RawModel {
            name: "m".into(),
            classes: Some(vec!["x".into(), "y".into()]),
            positive_class: None,
            threshold: None,
            thresholds: Vec::new(),
        })
    });
    assert_rejected(
        p,
        &[],
        br#"{"model":"m","prediction":"x","label":"z"}"#,
        Rejection::UnknownClass,
    );
}

#[test]
fn class_limit_takes_no_slot() {
    let p = pipeline(|r| r.limits.max_classes = 2);
    assert_rejected(
        p,
        &[r#"{"prediction":"a","label":"b"}"#],
        br#"{"prediction":"a","label":"c"}"#,
        Rejection::ClassLimit,
    );
}

#[test]
fn model_limit_takes_no_slot() {
    let p = pipeline(|r| r.limits.max_models = 1);
    assert_rejected(
        p,
        &[r#"{"model":"one","prediction":"a","label":"a"}"#],
        br#"{"model":"two","prediction":"a","label":"a"}"#,
        Rejection::ModelLimit,
    );
}
