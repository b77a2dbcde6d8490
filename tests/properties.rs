//! Invariants of the decode -> join -> engine pipeline, checked on random streams.

use proptest::prelude::*;

use predmon::config::Settings;
use predmon::engine::ScopeId;
use predmon::pipeline::{Mode, Pipeline};
use predmon::report::scope_json;
use serde_json::{json, Value};

const CLASSES: [&str; 5] = ["a", "b", "c", "7", "true"];
const MODELS: [&str; 3] = ["m1", "m2", "m3"];

/// One generated sample: (model, actual, predicted, split into halves?, time offset, label first?).
fn sample() -> impl Strategy<Value = (usize, usize, usize, bool, u32, bool)> {
    (
        0..MODELS.len(),
        0..CLASSES.len(),
        0..CLASSES.len(),
        any::<bool>(),
        0..600u32,
        any::<bool>(),
    )
}

/// Renders samples as event lines: complete events, or a prediction half and a label half.
fn lines(samples: &[(usize, usize, usize, bool, u32, bool)]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, &(m, a, p, split, dt, label_first)) in samples.iter().enumerate() {
        let t = 1_700_000_000 + dt as i64;
        if split {
            let pred =
                json!({"model": MODELS[m], "id": i, "prediction": CLASSES[p], "timestamp": t});
            let label = json!({"model": MODELS[m], "id": i.to_string(), "label": CLASSES[a], "timestamp": t + 5});
            if label_first {
                out.extend([label.to_string(), pred.to_string()]);
            } else {
                out.extend([pred.to_string(), label.to_string()]);
            }
        } else {
            out.push(
                json!({"model": MODELS[m], "prediction": CLASSES[p], "label": CLASSES[a], "timestamp": t})
                    .to_string(),
            );
        }
    }
    out
}

fn report(lines: &[String], scope_window: bool) -> Value {
    let settings = Settings::default();
    let mut p = Pipeline::new(&settings, Mode::Report, None, &["p"]);
    for l in lines {
        let _ = p.ingest(0, l.as_bytes(), 0);
    }
    // Default windows: 1m, 5m, 1h, all -> Window(1) is 5m.
    scope_json(
        &mut p,
        if scope_window {
            ScopeId::Window(1)
        } else {
            ScopeId::All
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// With L covering every class, micro precision = recall = F1 = accuracy.
    #[test]
    fn micro_f1_equals_accuracy(samples in prop::collection::vec(sample(), 1..200)) {
        let r = report(&lines(&samples), false);
        for (_, m) in r["models"].as_object().unwrap() {
            if m["samples"].as_u64().unwrap() == 0 { continue; }
            let acc = m["accuracy"].as_f64().unwrap();
            for k in ["precision", "recall", "f1"] {
                prop_assert!((m["micro"][k].as_f64().unwrap() - acc).abs() < 1e-12);
            }
        }
    }

    /// The confusion cells sum to the samples, per model and scope.
    #[test]
    fn confusion_sums_to_samples(samples in prop::collection::vec(sample(), 1..200), window in any::<bool>()) {
        let r = report(&lines(&samples), window);
        for (_, m) in r["models"].as_object().unwrap() {
            let total: u64 = m["confusion"].as_object().unwrap().values()
                .flat_map(|row| row.as_object().unwrap().values().map(|v| v.as_u64().unwrap()))
                .sum();
            prop_assert_eq!(total, m["samples"].as_u64().unwrap());
        }
    }

    /// Shuffling the lines changes nothing in the `all` report (the join is order-free),
    /// but for what depends on arrival order by definition: E5's reference period begins
    /// at the first prediction to arrive (see [`without_arrival_order`]).
    #[test]
    fn join_results_do_not_depend_on_order(samples in prop::collection::vec(sample(), 1..150), seed in any::<u64>()) {
        let ordered = lines(&samples);
        let mut shuffled = ordered.clone();
        // Fisher-Yates with a splitmix64 stream: reproducible from the seed.
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            shuffled.swap(i, ((z ^ (z >> 31)) % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(
            without_arrival_order(report(&ordered, false)),
            without_arrival_order(report(&shuffled, false))
        );
    }

    /// Rejected lines change the rejection counts and nothing else.
    #[test]
    fn rejected_lines_change_only_rejection_counts(
        samples in prop::collection::vec(sample(), 1..100),
        junk in prop::collection::vec((0..6usize, any::<u32>()), 1..30),
    ) {
        let clean = lines(&samples);
        let mut dirty = clean.clone();
        for (kind, pos) in &junk {
            let bad = match kind {
                0 => "{not json".to_string(),
                1 => "[1,2,3]".to_string(),
                2 => json!({"model": "m1", "prediction": 1.5, "label": "a"}).to_string(),
                3 => json!({"model": "m1", "prediction": "a"}).to_string(),
                4 => json!({"model": "m2", "prediction": "a", "label": "a", "timestamp": "yesterday"}).to_string(),
                _ => json!({"model": "m3"}).to_string(),
            };
            let at = *pos as usize % (dirty.len() + 1);
            dirty.insert(at, bad);
        }
        let (mut a, mut b) = (report(&clean, false), report(&dirty, false));
        prop_assert_eq!(b["events"]["read"].as_u64().unwrap(), a["events"]["read"].as_u64().unwrap() + junk.len() as u64);
        prop_assert_eq!(&a["events"]["accepted"], &b["events"]["accepted"]);
        a["events"] = Value::Null;
        b["events"] = Value::Null;
        prop_assert_eq!(a, b);
    }
}

/// `report` without the figures that depend on arrival order by definition: E5's
/// reference (it begins at the first prediction to arrive), the PSI against it and the
/// `distribution_shift` alert. The counts of predictions in `all` stay: they must not
/// depend on order.
fn without_arrival_order(mut report: Value) -> Value {
    for (_, m) in report["models"].as_object_mut().expect("models").iter_mut() {
        let drift = &mut m["drift"];
        for key in ["reference", "prediction_psi", "score_psi"] {
            drift[key] = Value::Null;
        }
        for (_, class) in drift["classes"]
            .as_object_mut()
            .expect("classes")
            .iter_mut()
        {
            class["reference"] = Value::Null;
        }
        for bin in drift["score_bins"].as_array_mut().expect("score_bins") {
            bin["reference"] = Value::Null;
        }
        m["alerts"]
            .as_array_mut()
            .expect("alerts")
            .retain(|a| a["alert"] != "distribution_shift");
    }
    report
}

/// Renders samples as split events whose prediction carries scores over some classes.
fn scored_lines(samples: &[(usize, usize, usize, u32, u32, bool)]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, &(m, a, p, dt, delay, label_first)) in samples.iter().enumerate() {
        let t = 1_700_000_000 + dt as i64;
        let mut scores = serde_json::Map::new();
        for (c, name) in CLASSES.iter().enumerate() {
            if (c + i) % 3 != 0 || c == p {
                scores.insert(name.to_string(), json!(((c * 7 + i) % 10) as f64 / 10.0));
            }
        }
        let pred = json!({"model": MODELS[m], "id": i, "prediction": CLASSES[p], "scores": scores, "timestamp": t});
        let label = json!({"model": MODELS[m], "id": i, "label": CLASSES[a], "timestamp": t + delay as i64});
        if label_first {
            out.extend([label.to_string(), pred.to_string()]);
        } else {
            out.extend([pred.to_string(), label.to_string()]);
        }
    }
    out
}

fn scored_sample() -> impl Strategy<Value = (usize, usize, usize, u32, u32, bool)> {
    (
        0..MODELS.len(),
        0..CLASSES.len(),
        0..CLASSES.len(),
        0..4000u32,
        0..900u32,
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Extension E1: once every label has joined, whatever the order and however far the
    /// windows rolled in between, the estimate is exactly the realised value in every
    /// scope; while labels are missing, it counts the unlabelled predictions (those whose scores
    /// give a known class a positive probability).
    #[test]
    fn estimate_equals_realised_once_labelled(samples in prop::collection::vec(scored_sample(), 1..120), seed in any::<u64>()) {
        let mut lines = scored_lines(&samples);
        let mut s = seed;
        for i in (1..lines.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lines.swap(i, ((s >> 33) % (i as u64 + 1)) as usize);
        }
        let settings = Settings::default();
        let mut p = Pipeline::new(&settings, Mode::Report, None, &["p"]);
        let half = lines.len() / 2;
        for l in &lines[..half] {
            let _ = p.ingest(0, l.as_bytes(), 0);
        }
        let mid = scope_json(&mut p, ScopeId::All);
        for (name, m) in mid["models"].as_object().unwrap() {
            let pending = m["join"]["unmatched_predictions"].as_u64().unwrap();
            // A prediction whose scores give no known class a positive probability has
            // no estimate.
            let unlabelled = m["estimated"]["unlabelled"].as_u64().unwrap();
            prop_assert!(unlabelled <= pending, "{}", name);
            prop_assert_eq!(
                m["estimated"]["samples"].as_u64().unwrap(),
                m["samples"].as_u64().unwrap() + unlabelled
            );
        }
        for l in &lines[half..] {
            let _ = p.ingest(0, l.as_bytes(), 0);
        }
        for scope in [ScopeId::All, ScopeId::Window(0), ScopeId::Window(1), ScopeId::Window(2)] {
            let r = scope_json(&mut p, scope);
            for (name, m) in r["models"].as_object().unwrap() {
                let e = &m["estimated"];
                prop_assert_eq!(e["unlabelled"].as_u64().unwrap(), 0);
                // E2: every sample carries scores, each counted once in one bin
                let cal = &m["calibration"];
                prop_assert_eq!(&cal["samples"], &m["samples"]);
                let binned: u64 = cal["bins"].as_array().unwrap().iter().map(|b| b["samples"].as_u64().unwrap()).sum();
                prop_assert_eq!(binned, m["samples"].as_u64().unwrap());
                prop_assert_eq!(&e["accuracy"], &m["accuracy"], "{} {:?}", name, scope);
                for avg in ["micro", "macro", "weighted"] {
                    prop_assert_eq!(&e[avg], &m[avg]);
                }
                for (c, v) in m["classes"].as_object().unwrap() {
                    for k in ["precision", "recall", "f1"] {
                        prop_assert_eq!(&e["classes"][c][k], &v[k]);
                    }
                }
            }
        }
    }
}
