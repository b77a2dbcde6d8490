//! `/api/v1/models`: `{"windows": {"5m": <report object>, ...}}`, each object exactly
//! the `predmon report` JSON (contract Section 5) for that window.

use std::sync::Mutex;

use serde_json::{Map, Value};

use super::Shared;
use crate::report::scope_json;

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
