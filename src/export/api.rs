//! `/api/v1/models`: `{"windows": {"5m": <report object>, ...}}`, each object exactly
//! the `predmon report` JSON (contract Section 5) for that window.

use std::sync::Mutex;

use serde_json::Value;

use super::Shared;
use crate::report::ReportCopy;

/// What the document needs, copied under the engine lock; the figures are computed
/// and the JSON built after it is released ([`ReportCopy`]).
pub fn copy(shared: &Mutex<Shared>) -> ReportCopy {
    ReportCopy::take(&mut super::lock_for_reading(shared).pipeline)
}

pub fn models_json(shared: &Mutex<Shared>) -> Value {
    copy(shared).to_value()
}

/// [`models_json`] as JSON text, byte for byte, written one model at a time.
pub fn models_json_bytes(shared: &Mutex<Shared>) -> Vec<u8> {
    let copy = copy(shared);
    let mut out = Vec::with_capacity(1 << 16);
    copy.write_json(&mut out);
    out
}

/// The document as it was built before the copy above: every scope's report computed
/// with the engine lock held throughout. Kept as the reference the copy is tested
/// against (byte for byte) and the baseline whose lock hold `benches/scrape.rs` measures.
#[doc(hidden)]
pub fn locked_reference_bytes(shared: &Mutex<Shared>) -> Vec<u8> {
    let mut guard = super::lock_for_reading(shared);
    let pipeline = &mut guard.pipeline;
    let mut scopes = pipeline.engine.scopes();
    scopes.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = b"{\"windows\":{".to_vec();
    for (i, (label, scope)) in scopes.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &label).expect("a string serializes");
        out.push(b':');
        crate::report::write_scope_json(pipeline, scope, &mut out);
    }
    out.extend_from_slice(b"}}");
    out
}

/// [`locked_reference_bytes`] as a value, as the page was built from it.
#[doc(hidden)]
pub fn locked_reference_value(shared: &Mutex<Shared>) -> Value {
    let mut guard = super::lock_for_reading(shared);
    let pipeline = &mut guard.pipeline;
    let mut windows = serde_json::Map::new();
    for (label, scope) in pipeline.engine.scopes() {
        windows.insert(label, crate::report::scope_json(pipeline, scope));
    }
    serde_json::json!({ "windows": windows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::pipeline::{Mode, Pipeline};

    #[test]
    fn written_one_model_at_a_time_it_is_the_same_json() {
        let mut p = Pipeline::new(&Settings::default(), Mode::Daemon, None, &["t"]);
        let now = crate::now_ns();
        for (i, m) in ["z", "a\"q", "b\\s", "\u{e9}", "m"].iter().enumerate() {
            for k in 0..20 {
                let line = serde_json::json!({"model": m, "prediction": format!("c{}", k % 3),
                    "label": format!("c{}", (k + i) % 4), "scores": {"c1": 0.5}});
                p.ingest(0, line.to_string().as_bytes(), now).unwrap();
            }
            let half = serde_json::json!({"model": m, "id": "x", "prediction": "c0"});
            p.ingest(0, half.to_string().as_bytes(), now).unwrap();
        }
        p.ingest(0, b"not json", now).unwrap_err();
        let shared = Mutex::new(Shared::new(p));
        let value = serde_json::to_vec(&models_json(&shared)).unwrap();
        assert_eq!(
            String::from_utf8(models_json_bytes(&shared)).unwrap(),
            String::from_utf8(value).unwrap()
        );
    }

    /// Copied under the lock and computed outside it, the document is byte for byte
    /// what it was computed under the lock, with every extension that shapes it: segments
    /// (E4), a positive class and thresholds (E3, E6), estimates of unlabelled scored
    /// predictions (E1), drift (E5), multi-label (E7), pending halves, rejections.
    #[test]
    fn the_copy_renders_what_the_locked_report_rendered() {
        let mut raw = crate::config::RawConfig::default();
        raw.fields.segment = "/seg".into();
        raw.limits.max_segments = 2;
        raw.models.push(crate::config::raw::RawModel {
            name: "bin".into(),
            positive_class: Some("yes".into()),
            thresholds: vec![0.3, 0.7],
            ..Default::default()
        });
        raw.models.push(crate::config::raw::RawModel {
            name: "tags".into(),
            multi_label: true,
            ..Default::default()
        });
        let settings = Settings::from_raw(raw).unwrap();
        let mut p = Pipeline::new(&settings, Mode::Daemon, None, &["a", "b"]);
        let now = crate::now_ns();
        let t = now / 1_000_000_000;
        for i in 0..300i64 {
            let seg = ["x", "y", "z"][(i % 3) as usize];
            let q = (i % 10) as f64 / 10.0 + 0.05;
            let (pred, label) = (
                if q >= 0.5 { "yes" } else { "no" },
                ["yes", "no"][(i % 4 == 0) as usize],
            );
            let lines = [
                serde_json::json!({"model": "bin", "seg": seg, "prediction": pred, "label": label,
                    "scores": {"yes": q, "no": 1.0 - q}, "timestamp": t - 3000 + i * 10}),
                serde_json::json!({"model": "bin", "id": format!("p{i}"), "prediction": pred,
                    "scores": {"yes": q, "no": 1.0 - q}, "timestamp": t - 3000 + i * 10}),
                serde_json::json!({"model": format!("m{}", i % 5), "prediction": format!("c{}", i % 7),
                    "label": format!("c{}", i % 5), "timestamp": t - 200 + i / 2}),
                serde_json::json!({"model": "tags", "prediction": ["k1", format!("k{}", i % 4)],
                    "label": [format!("k{}", i % 3)], "timestamp": t - 100}),
            ];
            for line in lines {
                p.ingest((i % 2) as usize, line.to_string().as_bytes(), now)
                    .unwrap();
            }
            if i % 3 == 0 {
                let label = serde_json::json!({"model": "bin", "id": format!("p{i}"), "label": label,
                    "timestamp": t - 2900 + i * 10});
                p.ingest(0, label.to_string().as_bytes(), now).unwrap();
            }
        }
        let label = serde_json::json!({"model": "m1", "id": "lonely", "label": "c3"});
        p.ingest(1, label.to_string().as_bytes(), now).unwrap();
        p.ingest(0, b"not json", now).unwrap_err();
        p.ingest(1, b"[1]", now).unwrap_err();
        let shared = Mutex::new(Shared::new(p));
        let before_bytes = String::from_utf8(locked_reference_bytes(&shared)).unwrap();
        let before_value = serde_json::to_string(&locked_reference_value(&shared)).unwrap();
        assert_eq!(before_bytes, before_value);
        let doc: Value = serde_json::from_str(&before_bytes).unwrap();
        let bin = &doc["windows"]["all"]["models"]["bin"];
        assert_eq!(bin["segments"].as_object().unwrap().len(), 3, "{bin}");
        assert!(bin["estimated"]["unlabelled"].as_u64().unwrap() > 0);
        assert_eq!(bin["thresholds"].as_array().unwrap().len(), 2);
        assert!(bin["join"]["unmatched_predictions"].as_u64().unwrap() > 0);
        assert_eq!(doc["windows"]["all"]["models"]["tags"]["multi_label"], true);
        assert!(doc["windows"].as_object().unwrap().len() >= 4);
        assert_eq!(
            String::from_utf8(models_json_bytes(&shared)).unwrap(),
            before_bytes
        );
        assert_eq!(
            serde_json::to_string(&models_json(&shared)).unwrap(),
            before_value
        );
        // And the page, which renders from the same document.
        let page = |api: &Value| super::super::page::render_index(api, "v", "5m", "/metrics");
        assert_eq!(
            page(&models_json(&shared)),
            page(&locked_reference_value(&shared))
        );
    }
}
