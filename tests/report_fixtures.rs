//! `predmon report` against reference reports computed independently with
//! scikit-learn (tests/fixtures/make_fixtures.py; regenerate with
//! `target/test-venv/bin/python tests/fixtures/make_fixtures.py`).
//!
//! Each directory in tests/fixtures/report/ is one scenario: events.jsonl,
//! an optional config.toml, args.json (extra CLI args) and expected.json.
//! The binary runs as
//! `predmon report --format json [--config config.toml] <args...> events.jsonl`
//! and its JSON must match expected.json:
//! - every key of expected must be present in the output and equal to it,
//!   numbers to 1e-9 absolute (keys the contract leaves undefined, such as
//!   ratios over zero samples, are left out of expected.json), or to the
//!   tolerance an optional tolerances.json gives a field name (values predmon
//!   estimates, such as ROC AUC from score histograms);
//! - `models`, each `classes` and each `segments` object must have exactly the
//!   expected keys;
//! - `confusion` and `events.rejected` treat a missing cell as 0, both ways;
//! - `alerts` compare as an unordered set of (alert, class).

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const TOLERANCE: f64 = 1e-9;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// `predmon report --format json` on a scenario's inputs, as JSON.
fn report_of(name: &str) -> Value {
    let dir = fixtures().join(name);
    let args: Vec<String> = serde_json::from_value(read_json(&dir.join("args.json")))
        .expect("args.json is a list of strings");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_predmon"));
    cmd.args(["report", "--format", "json"]);
    let config = dir.join("config.toml");
    if config.exists() {
        cmd.arg("--config").arg(&config);
    }
    cmd.args(&args).arg(dir.join("events.jsonl"));
    let out = cmd.output().expect("cannot run predmon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scenario {name}: `predmon report` exited with {}\nstderr:\n{stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "scenario {name}: stdout is not one JSON object: {e}\nstdout:\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn run_scenario(name: &str) {
    let dir = fixtures().join(name);
    let actual = report_of(name);
    let expected = read_json(&dir.join("expected.json"));

    // Per-field tolerances where predmon estimates a value (tolerances.json: field -> tol).
    let tolerances: std::collections::BTreeMap<String, f64> = {
        let path = dir.join("tolerances.json");
        if path.exists() {
            serde_json::from_value(read_json(&path)).expect("tolerances.json: field -> number")
        } else {
            Default::default()
        }
    };
    let mut errors = Vec::new();
    let mut cx = Compare {
        tolerances: &tolerances,
        errors: &mut errors,
    };
    cx.compare("$", None, &expected, &actual);
    if !errors.is_empty() {
        let shown = errors.len().min(40);
        panic!(
            "scenario {name}: {} mismatch(es) against expected.json{}:\n  {}",
            errors.len(),
            if shown < errors.len() {
                format!(" (first {shown})")
            } else {
                String::new()
            },
            errors[..shown].join("\n  ")
        );
    }
}

struct Compare<'a> {
    tolerances: &'a std::collections::BTreeMap<String, f64>,
    errors: &'a mut Vec<String>,
}

impl Compare<'_> {
    /// `field` is the key this value sits under, or None under a model or class
    /// name (so that a class called "confusion" is not taken for the field).
    fn compare(&mut self, path: &str, field: Option<&str>, expected: &Value, actual: &Value) {
        let errors = &mut *self.errors;
        match (expected, actual) {
            (Value::Number(e), Value::Number(a)) => {
                let (e, a) = (e.as_f64().unwrap(), a.as_f64().unwrap());
                let tolerance = field
                    .and_then(|f| self.tolerances.get(f))
                    .copied()
                    .unwrap_or(TOLERANCE);
                if (e - a).abs() > tolerance {
                    errors.push(format!(
                        "{path}: expected {e}, actual {a} (diff {:e})",
                        a - e
                    ));
                }
            }
            (Value::Object(_), Value::Object(_))
                if matches!(field, Some("confusion" | "rejected")) =>
            {
                compare_counts(path, expected, actual, errors)
            }
            (Value::Object(e), Value::Object(a)) => {
                let names = matches!(field, Some("models" | "classes" | "segments"));
                if names {
                    for k in e.keys().filter(|k| !a.contains_key(*k)) {
                        errors.push(format!("{path}: missing key {k:?}"));
                    }
                    for k in a.keys().filter(|k| !e.contains_key(*k)) {
                        errors.push(format!("{path}: unexpected key {k:?}"));
                    }
                }
                for (k, ev) in e {
                    let child = if names { None } else { Some(k.as_str()) };
                    match a.get(k) {
                        Some(av) => self.compare(&format!("{path}.{k}"), child, ev, av),
                        None if names => {} // reported above
                        None => self
                            .errors
                            .push(format!("{path}.{k}: missing, expected {ev}")),
                    }
                }
            }
            (Value::Array(e), Value::Array(a)) if field == Some("alerts") => {
                let set = |v: &Vec<Value>| -> BTreeSet<(String, String)> {
                    v.iter()
                        .map(|x| (x["alert"].to_string(), x["class"].to_string()))
                        .collect()
                };
                let (es, as_) = (set(e), set(a));
                if es != as_ || a.len() != as_.len() {
                    errors.push(format!(
                        "{path}: expected {expected} (in any order), actual {actual}"
                    ));
                }
            }
            (Value::Array(e), Value::Array(a)) => {
                if e.len() != a.len() {
                    errors.push(format!(
                        "{path}: expected {} elements, actual {}",
                        e.len(),
                        a.len()
                    ));
                }
                for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                    self.compare(&format!("{path}[{i}]"), field, ev, av);
                }
            }
            (e, a) => {
                if e != a {
                    errors.push(format!("{path}: expected {e}, actual {a}"));
                }
            }
        }
    }
}

/// Nested maps of counts where a missing entry means 0, on either side
/// (`confusion`: actual -> predicted -> count; `events.rejected`: reason -> count).
fn compare_counts(path: &str, expected: &Value, actual: &Value, errors: &mut Vec<String>) {
    let (zero, empty) = (Value::from(0), Value::Object(Default::default()));
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let keys: BTreeSet<&String> = e.keys().chain(a.keys()).collect();
            for k in keys {
                let (ev, av) = (e.get(k), a.get(k));
                let nested = ev.or(av).is_some_and(Value::is_object);
                let missing = if nested { &empty } else { &zero };
                let (ev, av) = (ev.unwrap_or(missing), av.unwrap_or(missing));
                compare_counts(&format!("{path}.{k}"), ev, av, errors);
            }
        }
        (Value::Number(e), Value::Number(a))
            if (e.as_f64().unwrap() - a.as_f64().unwrap()).abs() <= TOLERANCE => {}
        _ => errors.push(format!("{path}: expected {expected}, actual {actual}")),
    }
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        const SCENARIOS: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                run_scenario(stringify!($name));
            }
        )*
    };
}

scenarios!(
    binary,
    imbalanced_collapse,
    zipf10,
    only_predicted_only_true,
    multi_model,
    split_out_of_order,
    scores_clamping,
    window_edges_1m,
    window_by_prediction_1m,
    window_edges_5m,
    rejections,
    configured_classes,
    alert_thresholds,
    fields_remap,
    limits_default,
    estimate_calibrated,
    estimate_calibrated_labelled,
    estimate_miscalibrated,
    estimate_miscalibrated_labelled,
    calibration_edges,
    ranking_auc,
    threshold_scores,
    multi_label,
    multi_label_window,
    drift_shift,
    drift_shift_window,
    segments,
    segments_window_5m,
);

/// Extension E2: the calibration error tells a calibrated stream from an over-confident
/// one (all 4,000 samples per model labelled).
#[test]
fn calibration_error_flags_the_miscalibrated_stream() {
    let ece = |name: &str, model: &str| {
        report_of(name)["models"][model]["calibration"]["ece"]
            .as_f64()
            .unwrap()
    };
    for model in ["fraud", "topics"] {
        let (good, bad) = (
            ece("estimate_calibrated_labelled", model),
            ece("estimate_miscalibrated_labelled", model),
        );
        assert!(good < 0.03 && bad > 0.08, "{model}: ECE {good} vs {bad}");
    }
}

/// The largest difference between predmon's estimate on a partly labelled stream and
/// the realised value once every label has arrived, over accuracy and the averaged
/// precision, recall and F1, per model.
fn estimate_vs_realised(partial: &str, labelled: &str) -> Vec<(String, f64, f64)> {
    let (e, r) = (report_of(partial), report_of(labelled));
    let mut out = Vec::new();
    for (model, m) in e["models"].as_object().unwrap() {
        let est = &m["estimated"];
        let real = &r["models"][model];
        assert!(
            est["unlabelled"].as_u64().unwrap() > 0,
            "{model}: nothing to estimate"
        );
        let mut pairs = vec![(&est["accuracy"], &real["accuracy"])];
        for avg in ["micro", "macro", "weighted"] {
            for k in ["precision", "recall", "f1"] {
                pairs.push((&est[avg][k], &real[avg][k]));
            }
        }
        let diff = |(a, b): &(&Value, &Value)| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs();
        let worst = pairs.iter().map(diff).fold(0.0, f64::max);
        out.push((model.clone(), worst, diff(&pairs[0])));
    }
    out
}

/// Extension E1: with calibrated scores the estimate made while 75% of the labels are
/// missing lands within 0.02 of the realised value.
#[test]
fn estimate_lands_near_the_realised_value_when_calibrated() {
    for (model, worst, _) in
        estimate_vs_realised("estimate_calibrated", "estimate_calibrated_labelled")
    {
        assert!(worst < 0.02, "{model}: estimate off by {worst}");
    }
}

/// ... and with over-confident scores it does not: the accuracy estimate is off by more
/// than 0.05 (the calibration figures say why).
#[test]
fn estimate_is_off_when_miscalibrated() {
    for (model, _, accuracy) in
        estimate_vs_realised("estimate_miscalibrated", "estimate_miscalibrated_labelled")
    {
        assert!(
            accuracy > 0.05,
            "{model}: accuracy estimate off by only {accuracy}"
        );
    }
}

/// A scenario directory without a test function here would never run.
#[test]
fn every_fixture_directory_has_a_test() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures/report exists")
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = SCENARIOS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        on_disk, listed,
        "tests/fixtures/report/* and scenarios!(...) differ"
    );
}
