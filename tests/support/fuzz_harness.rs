//! The bodies of the fuzz targets. `fuzz/fuzz_targets/*.rs` include this file for
//! cargo-fuzz (libFuzzer, nightly flags), and `tests/fuzz_corpus.rs` includes it too, so
//! that plain `cargo test` on stable replays the committed corpus and every regression
//! case through exactly the same checks.
//!
//! - [`decode`]: one line through the decoder, checked against serde_json's own reading
//!   of the same bytes (the reason, and the strings predmon extracts).
//! - [`join`]: the input read as a program of events (halves, complete events, junk,
//!   clock ticks, snapshot and restore) fed to a daemon-mode pipeline with tiny limits,
//!   each outcome compared with a plain reference model of contract Section 1.
//! - [`stream`]: raw bytes through the line splitter and the pipeline, in two different
//!   chunkings: the same lines, each counted exactly once.

#![allow(dead_code)] // each fuzz target uses one of these functions

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::OnceLock;

use predmon::config::raw::{RawConfig, RawModel};
use predmon::config::Settings;
use predmon::event::{Decoder, Event, Rejection, Side};
use predmon::export::Shared;
use predmon::pipeline::{Mode, Pipeline};
use predmon::source::lines::{Line, LineSplitter};
use serde_json::Value;

fn settings(edit: impl FnOnce(&mut RawConfig)) -> Settings {
    let mut raw = RawConfig::default();
    edit(&mut raw);
    Settings::from_raw(raw).expect("fuzz configuration is valid")
}

struct Decoders {
    plain: Decoder,
    /// Nested pointers, a pointer and a pointer below it, an array index, ms timestamps.
    nested: Decoder,
    /// A model with configured classes (array scores, unknown_class).
    classes: Decoder,
}

fn decoders() -> &'static Decoders {
    static D: OnceLock<Decoders> = OnceLock::new();
    D.get_or_init(|| Decoders {
        plain: Decoder::new(&settings(|r| r.limits.max_event_bytes = 4096)),
        nested: Decoder::new(&settings(|r| {
            r.fields.model = "/meta".into();
            r.fields.id = "/meta/id".into();
            r.fields.label = "/feedback/actual".into();
            r.fields.prediction = "/out/0".into();
            r.fields.scores = "/out/1".into();
            r.fields.timestamp = "/meta/ts".into();
            r.fields.timestamp_unit = "ms".into();
        })),
        classes: Decoder::new(&settings(|r| {
            r.models.push(RawModel {
                name: "default".into(),
                classes: Some(vec!["a".into(), "b".into(), "1".into()]),
                ..Default::default()
            })
        })),
    })
}

/// How serde_json reads a class, id or model value (contract Section 1), or `None` when
/// the oracle cannot say (a number serde_json only holds as a float).
fn class_text(v: &Value) -> Option<Option<String>> {
    match v {
        Value::String(s) => Some(Some(s.clone())),
        Value::Bool(b) => Some(Some(b.to_string())),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(Some(n.to_string())),
        Value::Number(_) => None,
        _ => Some(None),
    }
}

fn check_event_against(e: &Event<'_>, v: &serde_json::Map<String, Value>) {
    let present = |k: &str| v.get(k).filter(|x| !x.is_null());
    if let Some(p) = present("prediction").map(class_text) {
        if let Some(p) = p {
            assert_eq!(e.prediction.as_deref(), p.as_deref(), "prediction");
        }
    } else {
        assert!(e.prediction.is_none());
    }
    if let Some(l) = present("label").map(class_text) {
        if let Some(l) = l {
            assert_eq!(e.label.as_deref(), l.as_deref(), "label");
        }
    } else {
        assert!(e.label.is_none());
    }
    match present("model") {
        None => assert_eq!(e.model, "default"),
        Some(Value::String(s)) => assert_eq!(e.model, s.as_str()),
        Some(_) => {}
    }
    if let Some(Value::String(s)) = present("id") {
        assert_eq!(e.id.as_deref(), Some(s.as_str()), "id");
    }
}

/// One line through the decoder under three configurations; with the plain one the
/// outcome is checked against serde_json's reading of the same bytes.
pub fn decode(data: &[u8]) {
    let d = decoders();
    for decoder in [&d.nested, &d.classes] {
        let first = decoder.decode(data).map(|e| format!("{e:?}"));
        let again = decoder.decode(data).map(|e| format!("{e:?}"));
        assert_eq!(first, again, "decoding is deterministic");
    }
    let got = d.plain.decode(data);
    if data.len() > d.plain.max_event_bytes() {
        assert_eq!(got.unwrap_err(), Rejection::TooLarge);
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        assert_eq!(got.unwrap_err(), Rejection::InvalidUtf8);
        return;
    };
    let parsed = match serde_json::from_str::<Value>(text) {
        Ok(v) => v,
        Err(e) => {
            let why = e.to_string();
            // serde_json's Value stops at 128 levels, at numbers beyond f64 and at
            // escaped lone surrogates (RFC 8259 leaves those to the reader); predmon
            // reads only its fields, skipping the rest without converting it.
            let unread = [
                "recursion limit",
                "number out of range",
                "surrogate",
                "hex escape",
            ];
            if !unread.iter().any(|u| why.contains(u)) {
                assert_eq!(got.unwrap_err(), Rejection::InvalidJson, "{why}");
            }
            return;
        }
    };
    let Value::Object(map) = parsed else {
        assert_eq!(got.unwrap_err(), Rejection::NotAnObject);
        return;
    };
    let absent = |k: &str| map.get(k).is_none_or(Value::is_null);
    match got {
        Ok(e) => check_event_against(&e, &map),
        Err(why) => {
            assert!(
                !matches!(
                    why,
                    Rejection::InvalidJson
                        | Rejection::NotAnObject
                        | Rejection::InvalidUtf8
                        | Rejection::TooLarge
                ),
                "an object serde_json reads was rejected as {why:?}"
            );
            if why == Rejection::NoPredictionOrLabel {
                assert!(absent("prediction") && absent("label"));
            }
        }
    }
    if absent("prediction") && absent("label") {
        assert_eq!(
            d.plain.decode(data).unwrap_err(),
            Rejection::NoPredictionOrLabel
        );
    }
}

// ---------------------------------------------------------------------------------------
// join: a program of events against a reference model

const MAX_PENDING: usize = 8;
const MAX_CLASSES: usize = 4;
const MAX_MODELS: usize = 3;
const MAX_EVENT_BYTES: usize = 512;
const TTL_S: i64 = 60;

/// Model values as written (`None`: the field is absent, so `default`).
const MODELS: [Option<&str>; 5] = [
    Some(r#""m0""#),
    Some(r#""m1""#),
    Some(r#""m2""#),
    Some(r#""m3""#),
    None,
];
const MODEL_NAMES: [&str; 5] = ["m0", "m1", "m2", "m3", "default"];
/// m3 has configured classes.
const M3_CLASSES: [&str; 2] = ["a", "b"];
/// Class values as written, and the class each one is.
const CLASSES: [(&str, &str); 6] = [
    (r#""a""#, "a"),
    (r#""b""#, "b"),
    (r#""c""#, "c"),
    (r#""d""#, "d"),
    ("7", "7"),
    (r#""7""#, "7"),
];
/// Id values as written, and the id each one is (`None`: not an id, so missing).
const IDS: [(&str, Option<&str>); 16] = [
    (r#""1""#, Some("1")),
    ("1", Some("1")),
    (r#""x""#, Some("x")),
    (r#""""#, Some("")),
    (r#""\u00e9""#, Some("\u{e9}")),
    ("\"\u{e9}\"", Some("\u{e9}")),
    (r#""a\"b""#, Some("a\"b")),
    (r#""\u0000""#, Some("\u{0}")),
    ("0", Some("0")),
    ("-0", Some("0")),
    (r#""01""#, Some("01")),
    ("18446744073709551616", Some("18446744073709551616")),
    (r#""18446744073709551616""#, Some("18446744073709551616")),
    ("true", None),
    ("1.5", None),
    ("null", None),
];
/// Lines rejected whatever the state, and why.
const JUNK: [(&[u8], Rejection); 7] = [
    (b"not json", Rejection::InvalidJson),
    (b"[1]", Rejection::NotAnObject),
    (br#"{"model":"m0"}"#, Rejection::NoPredictionOrLabel),
    (br#"{"prediction":1.5,"label":"a"}"#, Rejection::BadClass),
    (
        br#"{"prediction":"a","label":"a","timestamp":"yesterday"}"#,
        Rejection::BadTimestamp,
    ),
    (b"{\"prediction\":\"\xff\"}", Rejection::InvalidUtf8),
    (
        br#"{"prediction":"a","label":"a","scores":{"a":NaN}}"#,
        Rejection::InvalidJson,
    ),
];

fn join_settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| {
        settings(|r| {
            r.metrics.windows = vec!["1m".into(), "all".into()];
            r.join.ttl = format!("{TTL_S}s");
            r.join.max_pending = MAX_PENDING as i64;
            r.limits.max_classes = MAX_CLASSES as i64;
            r.limits.max_models = MAX_MODELS as i64;
            r.limits.max_event_bytes = MAX_EVENT_BYTES as i64;
            r.models.push(RawModel {
                name: "m3".into(),
                classes: Some(M3_CLASSES.iter().map(|c| c.to_string()).collect()),
                ..Default::default()
            });
        })
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scores {
    None,
    Object,
    Array,
}

/// Contract Section 1, written as plainly as possible.
#[derive(Default)]
struct Reference {
    /// Models in order of their first accepted event, with their classes.
    models: Vec<(String, Vec<String>)>,
    /// (model, id, side, class, arrival ns), oldest first.
    pending: VecDeque<(String, String, Side, String, i64)>,
    samples: BTreeMap<(String, String, String), u64>,
    expired: BTreeMap<(String, &'static str), u64>,
}

impl Reference {
    fn model(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|(n, _)| n == name)
    }

    fn event(
        &mut self,
        model: &str,
        id: Option<&str>,
        prediction: Option<&str>,
        label: Option<&str>,
        scores: Scores,
        now: i64,
    ) -> Result<(), Rejection> {
        let configured = (model == "m3").then_some(&M3_CLASSES[..]);
        if scores == Scores::Array && configured.is_none() {
            return Err(Rejection::BadScores);
        }
        let half = match (prediction, label) {
            (Some(_), Some(_)) => None,
            (Some(_), None) => Some(Side::Prediction),
            _ => Some(Side::Label),
        };
        if half.is_some() && id.is_none() {
            return Err(Rejection::MissingId);
        }
        if let Some(cs) = configured {
            let known = |c: Option<&str>| c.is_none_or(|c| cs.contains(&c));
            if !known(prediction) || !known(label) {
                return Err(Rejection::UnknownClass);
            }
        }
        if let (Some(side), Some(_)) = (half, self.model(model)) {
            let id = id.expect("checked");
            if self
                .pending
                .iter()
                .any(|p| p.0 == model && p.1 == id && p.2 == side)
            {
                return Err(Rejection::DuplicateId);
            }
        }
        let existing = self.model(model);
        if existing.is_none() && self.models.len() >= MAX_MODELS {
            return Err(Rejection::ModelLimit);
        }
        let mut classes = match existing {
            Some(m) => self.models[m].1.clone(),
            None => configured
                .map(|cs| cs.iter().map(|c| c.to_string()).collect())
                .unwrap_or_default(),
        };
        for c in [prediction, label].into_iter().flatten() {
            if !classes.iter().any(|k| k == c) {
                classes.push(c.to_string());
            }
        }
        if classes.len() > MAX_CLASSES {
            return Err(Rejection::ClassLimit);
        }
        match existing {
            Some(m) => self.models[m].1 = classes,
            None => self.models.push((model.to_string(), classes)),
        }
        let Some(side) = half else {
            let key = (
                model.into(),
                label.unwrap().into(),
                prediction.unwrap().into(),
            );
            *self.samples.entry(key).or_default() += 1;
            return Ok(());
        };
        let id = id.expect("checked");
        let class = prediction.or(label).expect("one side").to_string();
        if let Some(at) = self.pending.iter().position(|p| p.0 == model && p.1 == id) {
            let other = self.pending.remove(at).expect("found");
            let (actual, predicted) = match side {
                Side::Prediction => (other.3, class),
                Side::Label => (class, other.3),
            };
            *self
                .samples
                .entry((model.into(), actual, predicted))
                .or_default() += 1;
            return Ok(());
        }
        self.pending
            .push_back((model.into(), id.into(), side, class, now));
        if self.pending.len() > MAX_PENDING {
            self.expire_oldest();
        }
        Ok(())
    }

    fn expire_oldest(&mut self) {
        let old = self.pending.pop_front().expect("non-empty");
        *self.expired.entry((old.0, old.2.label())).or_default() += 1;
    }

    fn tick(&mut self, now: i64) {
        let cutoff = now - TTL_S * 1_000_000_000;
        while self.pending.front().is_some_and(|p| p.4 < cutoff) {
            self.expire_oldest();
        }
    }
}

/// Asserts that the pipeline holds what the reference holds.
fn same_state(p: &Pipeline, r: &Reference) {
    let models: Vec<&str> = p.engine.models().iter().map(|m| m.name.as_str()).collect();
    let expected: Vec<&str> = r.models.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(models, expected, "models");
    let mut samples = BTreeMap::new();
    let mut expired = BTreeMap::new();
    for (i, m) in p.engine.models().iter().enumerate() {
        assert_eq!(
            m.class_names(),
            r.models[i].1.as_slice(),
            "classes of {}",
            m.name
        );
        for (a, pr, n) in m.confusion_totals() {
            let key = (
                m.name.clone(),
                m.class_name(a).to_string(),
                m.class_name(pr).to_string(),
            );
            samples.insert(key, n);
        }
        for side in [Side::Prediction, Side::Label] {
            if m.join_expired[side as usize] > 0 {
                expired.insert(
                    (m.name.clone(), side.label()),
                    m.join_expired[side as usize],
                );
            }
        }
        let pending = p.join.pending_of(i as u32);
        for side in [Side::Prediction, Side::Label] {
            let want = r
                .pending
                .iter()
                .filter(|h| h.0 == m.name && h.2 == side)
                .count() as u64;
            assert_eq!(
                pending[side as usize], want,
                "pending {side:?} of {}",
                m.name
            );
        }
    }
    assert_eq!(samples, r.samples, "confusion counts");
    assert_eq!(expired, r.expired, "expired halves");
    assert_eq!(p.join.len(), r.pending.len(), "pending halves");
    assert!(p.join.len() <= MAX_PENDING);
}

fn fresh_shared() -> Shared {
    Shared::new(Pipeline::new(
        join_settings(),
        Mode::Daemon,
        None,
        &["fuzz"],
    ))
}

/// Reads the input four bytes per operation; see the module documentation.
pub fn join(data: &[u8]) {
    let mut shared = fresh_shared();
    let mut reference = Reference::default();
    let mut now: i64 = 1_700_000_000_000_000_000;
    let mut read = 0u64;
    // Snapshots are the slow part (the engine's windows, calibration and ranking bins):
    // a few per input, and one more at the end.
    let mut snapshots = 0;
    for op in data.chunks_exact(4) {
        let (kind, a, b, c) = (op[0] % 10, op[1], op[2], op[3]);
        let p = &mut shared.pipeline;
        match kind {
            0..=4 | 8 | 9 => {
                let m = a as usize % MODELS.len();
                let (id_text, id) = IDS[if kind >= 8 { b % 4 } else { b % 16 } as usize];
                let (class_text, class) = CLASSES[c as usize % CLASSES.len()];
                let scores = [Scores::None, Scores::Object, Scores::Array][(c >> 4) as usize % 3];
                let (prediction, label) = match kind {
                    0 | 1 | 8 => (Some((class_text, class)), None),
                    2 | 3 | 9 => (None, Some((class_text, class))),
                    _ => {
                        let (pt, pc) = CLASSES[b as usize % CLASSES.len()];
                        (Some((pt, pc)), Some((class_text, class)))
                    }
                };
                let mut line = String::from("{");
                if let Some(mt) = MODELS[m] {
                    line += &format!(r#""model":{mt},"#);
                }
                if kind != 4 || b & 0x80 != 0 {
                    line += &format!(r#""id":{id_text},"#);
                }
                if let Some((t, _)) = prediction {
                    line += &format!(r#""prediction":{t},"#);
                }
                if let Some((t, _)) = label {
                    line += &format!(r#""label":{t},"#);
                }
                match scores {
                    Scores::None => {}
                    Scores::Object => line += r#""scores":{"a":0.25,"b":0.75},"#,
                    Scores::Array => line += r#""scores":[0.5,0.5],"#,
                }
                line += &format!(r#""timestamp":{}}}"#, now / 1_000_000_000 - (a as i64));
                let got = p.ingest(0, line.as_bytes(), now);
                let want = reference.event(
                    MODEL_NAMES[m],
                    id,
                    prediction.map(|x| x.1),
                    label.map(|x| x.1),
                    scores,
                    now,
                );
                assert_eq!(got, want, "{line}");
                read += 1;
            }
            5 => {
                let (line, why) = JUNK[a as usize % JUNK.len()];
                assert_eq!(p.ingest(0, line, now), Err(why));
                let long = vec![b' '; MAX_EVENT_BYTES + 1];
                if b & 1 == 1 {
                    assert_eq!(p.ingest(0, &long, now), Err(Rejection::TooLarge));
                    read += 1;
                }
                read += 1;
            }
            6 => {
                now += (a as i64 + 1) * 1_000_000_000;
                p.tick(now);
                reference.tick(now);
            }
            _ if snapshots >= 3 => {}
            _ => {
                snapshots += 1;
                // Snapshot and restore, then carry on with the restored pipeline.
                let bytes = predmon::state::capture(&shared);
                let mut restored = fresh_shared();
                predmon::state::restore_bytes(Path::new("fuzz"), &bytes, &mut restored)
                    .expect("a snapshot restores");
                let again = predmon::state::capture(&restored);
                assert!(
                    again == bytes,
                    "a restored snapshot captures the same:\n{}\n{}",
                    String::from_utf8_lossy(&bytes),
                    String::from_utf8_lossy(&again)
                );
                // Captured byte for byte the same, the restored copy reports the same (the
                // reports are compared once, at the end: they are the slow part).
                shared = restored;
            }
        }
        let p = &shared.pipeline;
        assert_eq!(p.sources[0].read, read);
        same_state(p, &reference);
    }
    // Every scope of every model renders, and a restored copy renders the same.
    let bytes = predmon::state::capture(&shared);
    let mut restored = fresh_shared();
    predmon::state::restore_bytes(Path::new("fuzz"), &bytes, &mut restored)
        .expect("a snapshot restores");
    for scope in [
        predmon::engine::ScopeId::All,
        predmon::engine::ScopeId::Window(0),
    ] {
        let r = predmon::report::scope_json(&mut shared.pipeline, scope);
        serde_json::to_string(&r).expect("the report serializes");
        let again = predmon::report::scope_json(&mut restored.pipeline, scope);
        assert_eq!(r, again, "a restored snapshot reports the same");
    }
}

// ---------------------------------------------------------------------------------------
// stream: raw bytes through the splitter and the pipeline

fn split(data: &[u8], max: usize, cut: usize) -> Vec<Option<Vec<u8>>> {
    let mut s = LineSplitter::new(max);
    let mut out = Vec::new();
    let mut push = |l: Line<'_>| {
        out.push(match l {
            Line::Event(b) => {
                assert!(b.len() <= max, "a line over the limit was handed on");
                assert!(!b.contains(&b'\n'));
                Some(b.to_vec())
            }
            Line::TooLarge => None,
        })
    };
    let (head, tail) = data.split_at(cut.min(data.len()));
    s.feed(head, &mut push);
    for piece in tail.chunks(7) {
        s.feed(piece, &mut push);
    }
    s.finish(&mut push);
    out
}

/// The first byte picks the line limit and a chunk boundary; the rest is the stream.
pub fn stream(data: &[u8]) {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let max = 16 + (first as usize % 8) * 32;
    let whole = split(data, max, data.len());
    let chunked = split(data, max, first as usize * 3);
    assert_eq!(
        whole, chunked,
        "lines do not depend on how the bytes arrived"
    );
    let s = settings(|r| {
        r.limits.max_event_bytes = max as i64;
        r.limits.max_classes = 3;
        r.limits.max_models = 2;
    });
    let mut p = Pipeline::new(&s, Mode::Daemon, None, &["fuzz"]);
    let mut now = 1_700_000_000_000_000_000;
    for line in &whole {
        let before: u64 = p.sources[0].rejected.iter().sum();
        let outcome = match line {
            Some(b) => p.ingest(0, b, now),
            None => {
                p.reject(0, Rejection::TooLarge);
                Err(Rejection::TooLarge)
            }
        };
        let after: u64 = p.sources[0].rejected.iter().sum();
        assert_eq!(
            after - before,
            outcome.is_err() as u64,
            "one outcome per line"
        );
        now += 1_000_000_000;
        p.tick(now);
    }
    assert_eq!(p.sources[0].read, whole.len() as u64);
    assert!(p.engine.models().len() <= 2);
    for m in p.engine.models() {
        assert!(m.class_names().len() <= 3);
    }
    let r = predmon::report::scope_json(&mut p, predmon::engine::ScopeId::All);
    serde_json::to_string(&r).expect("the report serializes");
}
