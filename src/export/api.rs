//! `/api/v1/models`: `{"windows": {"5m": <report object>, ...}}`, each object exactly
//! the `predmon report` JSON (contract Section 5) for that window.

use std::sync::Mutex;

use serde_json::{Map, Value};

use super::Shared;
use crate::report::{scope_json, write_scope_json};

pub fn models_json(shared: &Mutex<Shared>) -> Value {
    let mut guard = super::lock_for_reading(shared);
    let pipeline = &mut guard.pipeline;
    let mut windows = Map::new();
    for (label, scope) in pipeline.engine.scopes() {
        windows.insert(label, scope_json(pipeline, scope));
    }
    let mut out = Map::new();
    out.insert("windows".into(), Value::Object(windows));
    Value::Object(out)
}

/// [`models_json`] as JSON text, byte for byte, written one model at a time (see
/// [`write_scope_json`]).
pub fn models_json_bytes(shared: &Mutex<Shared>) -> Vec<u8> {
    let mut guard = super::lock_for_reading(shared);
    let pipeline = &mut guard.pipeline;
    let mut scopes = pipeline.engine.scopes();
    // The order of serde_json's Map, as `models_json` serializes it.
    scopes.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(1 << 16);
    out.extend_from_slice(b"{\"windows\":{");
    for (i, (label, scope)) in scopes.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &label).expect("json");
        out.push(b':');
        write_scope_json(pipeline, scope, &mut out);
    }
    out.extend_from_slice(b"}}");
    out
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
}
