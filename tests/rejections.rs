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
            ..Default::default()
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

/// A multi-label model (extension E7), with `classes` when given.
fn multi_label(classes: Option<&[&str]>, max_classes: i64) -> Pipeline {
    pipeline(|r| {
        r.limits.max_classes = max_classes;
        r.models.push(RawModel {
            name: "tags".into(),
            classes: classes.map(|c| c.iter().map(|s| s.to_string()).collect()),
            multi_label: true,
            ..Default::default()
        })
    })
}

#[test]
fn not_a_class_set_for_a_multi_label_model() {
    let setup = [r#"{"model":"tags","prediction":["a"],"label":[]}"#];
    for line in [
        &br#"{"model":"tags","prediction":"a","label":["a"]}"#[..],
        br#"{"model":"tags","prediction":["a"],"label":1}"#,
        br#"{"model":"tags","id":1,"label":true}"#,
    ] {
        assert_rejected(
            multi_label(None, 100),
            &setup,
            line,
            Rejection::NotAClassSet,
        );
    }
}

#[test]
fn class_sets_for_a_single_label_model_and_bad_members_are_bad_class() {
    assert_rejected(
        pipeline(|_| {}),
        &[],
        br#"{"prediction":["a"],"label":"a"}"#,
        Rejection::BadClass,
    );
    for line in [
        &br#"{"model":"tags","prediction":["a",1.5],"label":[]}"#[..],
        br#"{"model":"tags","prediction":[["a"]],"label":[]}"#,
        br#"{"model":"tags","prediction":{"a":1},"label":[]}"#,
        br#"{"model":"tags","prediction":["a"],"label":2.5}"#,
    ] {
        assert_rejected(multi_label(None, 100), &[], line, Rejection::BadClass);
    }
}

#[test]
fn class_sets_over_the_class_limit() {
    // More entries than max_classes, even if they collapse.
    assert_rejected(
        multi_label(None, 3),
        &[],
        br#"{"model":"tags","prediction":["a","a","a","a"],"label":[]}"#,
        Rejection::ClassLimit,
    );
    // The union of both sets with the model's classes, each new class counted once.
    assert_rejected(
        multi_label(None, 3),
        &[r#"{"model":"tags","prediction":["a"],"label":["b"]}"#],
        br#"{"model":"tags","prediction":["c","d"],"label":["d"]}"#,
        Rejection::ClassLimit,
    );
    let mut p = multi_label(None, 3);
    assert_eq!(
        p.ingest(
            0,
            br#"{"model":"tags","prediction":["a","b"],"label":["c","b"]}"#,
            0
        ),
        Ok(())
    );
}

#[test]
fn class_sets_unknown_class_missing_id_and_duplicate_id() {
    assert_rejected(
        multi_label(Some(&["a", "b"]), 100),
        &[],
        br#"{"model":"tags","prediction":["a"],"label":["a","z"]}"#,
        Rejection::UnknownClass,
    );
    assert_rejected(
        multi_label(None, 100),
        &[],
        br#"{"model":"tags","prediction":["a"]}"#,
        Rejection::MissingId,
    );
    assert_rejected(
        multi_label(None, 100),
        &[r#"{"model":"tags","id":"x","prediction":["a"]}"#],
        br#"{"model":"tags","id":"x","prediction":["b"]}"#,
        Rejection::DuplicateId,
    );
}

/// Split halves of a multi-label model join by (model, id) in any order; scores are
/// ignored; empty sets are valid.
#[test]
fn class_sets_join_and_count_one_vs_rest() {
    let mut p = multi_label(None, 100);
    for l in [
        r#"{"model":"tags","id":1,"label":["b","a"],"timestamp":10}"#,
        r#"{"model":"tags","prediction":[],"label":[],"scores":"ignored","timestamp":11}"#,
        r#"{"model":"tags","id":1,"prediction":["a","c","a"],"timestamp":12}"#,
        r#"{"model":"tags","id":2,"prediction":[],"timestamp":13}"#,
    ] {
        assert_eq!(p.ingest(0, l.as_bytes(), 0), Ok(()), "{l}");
    }
    let r = scope_json(&mut p, predmon::engine::ScopeId::All);
    let m = &r["models"]["tags"];
    assert_eq!(m["multi_label"], true);
    assert_eq!(m["samples"], 2);
    assert_eq!(m["join"]["unmatched_predictions"], 1);
    let c = &m["classes"];
    let counts = |k: &str| {
        let c = &c[k];
        (
            c["tp"].as_u64(),
            c["fp"].as_u64(),
            c["fn"].as_u64(),
            c["tn"].as_u64(),
        )
    };
    assert_eq!(counts("a"), (Some(1), Some(0), Some(0), Some(1)));
    assert_eq!(counts("b"), (Some(0), Some(0), Some(1), Some(1)));
    assert_eq!(counts("c"), (Some(0), Some(1), Some(0), Some(1)));
    // |P xor T| = 2 over 2 samples x 3 classes; one exact match (both empty).
    assert!((m["hamming_loss"].as_f64().unwrap() - 2.0 / 6.0).abs() < 1e-15);
    assert_eq!(m["accuracy"], 0.5);
    // Per-sample F1: 2*1/(2+2) = 0.5, and 0 for the empty pair (zero_division = 0).
    assert_eq!(m["samples_average"]["f1"], 0.25);
    assert_eq!(m["confusion"], serde_json::json!({}));
}
