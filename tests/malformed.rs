//! Property tests with generators of malformed events: random bytes, valid events cut
//! short or with a NUL or a non-UTF-8 byte inserted, and valid events with one field
//! poisoned. Mixed into a stream of valid events and split into lines in random chunks,
//! each malformed line gets exactly one outcome, the one it must get, and the valid lines
//! around them are counted exactly as without them. No input panics.

use proptest::prelude::*;

use predmon::config::Settings;
use predmon::engine::ScopeId;
use predmon::event::Rejection;
use predmon::pipeline::{Mode, Pipeline};
use predmon::report::scope_json;
use predmon::source::lines::{Line, LineSplitter};
use serde_json::{json, Value};

const MODELS: [&str; 2] = ["m1", "m2"];
/// Non-ASCII classes too, so that cutting a line can split a character.
const CLASSES: [&str; 4] = ["a", "b", "\u{e9}t\u{e9}", "\u{1F600}"];

/// A valid event, or a split pair: (model, actual, predicted, split, label first).
fn valid() -> impl Strategy<Value = (usize, usize, usize, bool, bool)> {
    (
        0..MODELS.len(),
        0..CLASSES.len(),
        0..CLASSES.len(),
        any::<bool>(),
        any::<bool>(),
    )
}

fn render(samples: &[(usize, usize, usize, bool, bool)]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, &(m, a, p, split, label_first)) in samples.iter().enumerate() {
        let t = 1_700_000_000 + i as i64;
        if split {
            let pred = json!({"model": MODELS[m], "id": format!("v{i}"), "prediction": CLASSES[p], "timestamp": t});
            let label = json!({"model": MODELS[m], "id": format!("v{i}"), "label": CLASSES[a], "timestamp": t});
            let (x, y) = if label_first {
                (label, pred)
            } else {
                (pred, label)
            };
            out.push(x.to_string().into_bytes());
            out.push(y.to_string().into_bytes());
        } else {
            out.push(
                json!({"model": MODELS[m], "prediction": CLASSES[p], "label": CLASSES[a], "scores": {CLASSES[a]: 0.5}, "timestamp": t})
                    .to_string()
                    .into_bytes(),
            );
        }
    }
    out
}

/// What a malformed line must come to: exactly this reason, or one of these.
#[derive(Debug, Clone)]
enum Expect {
    Exactly(Rejection),
    OneOf(&'static [Rejection]),
}

/// Field values that are wrong for their field, and the reason each one gets.
const POISON: [(&str, &str, Rejection); 22] = [
    ("prediction", "1.5", Rejection::BadClass),
    ("prediction", "2.0", Rejection::BadClass),
    ("prediction", "1e5", Rejection::BadClass),
    ("prediction", "[1]", Rejection::BadClass),
    ("label", "{\"a\":1}", Rejection::BadClass),
    ("model", "1.5", Rejection::BadClass),
    ("model", "[]", Rejection::BadClass),
    ("model", "true", Rejection::BadClass),
    ("timestamp", "\"yesterday\"", Rejection::BadTimestamp),
    ("timestamp", "true", Rejection::BadTimestamp),
    ("timestamp", "[]", Rejection::BadTimestamp),
    (
        "timestamp",
        "\"2024-01-01T00:00:00\"",
        Rejection::BadTimestamp,
    ),
    (
        "timestamp",
        "\"2024-02-30T00:00:00Z\"",
        Rejection::BadTimestamp,
    ),
    ("timestamp", "1e30", Rejection::BadTimestamp),
    (
        "timestamp",
        "170141183460469231731687303715.9",
        Rejection::BadTimestamp,
    ),
    ("scores", "{\"a\":-0.1}", Rejection::BadScores),
    ("scores", "{\"a\":1.5}", Rejection::BadScores),
    ("scores", "{\"a\":\"x\"}", Rejection::BadScores),
    ("scores", "[0.5,0.5]", Rejection::BadScores),
    ("scores", "\"0.5\"", Rejection::BadScores),
    ("scores", "{\"a\":1e400}", Rejection::BadScores),
    ("scores", "true", Rejection::BadScores),
];

/// Whole lines of the wrong shape, and the reason each one gets.
const SHAPES: [(&[u8], Rejection); 8] = [
    (
        b"{\"model\":\"m1\",\"id\":1}" as &[u8],
        Rejection::NoPredictionOrLabel,
    ),
    (
        b"{\"model\":\"m1\",\"prediction\":\"a\"}" as &[u8],
        Rejection::MissingId,
    ),
    (
        b"{\"label\":\"a\",\"id\":true}" as &[u8],
        Rejection::MissingId,
    ),
    (
        b"[{\"prediction\":\"a\",\"label\":\"a\"}]" as &[u8],
        Rejection::NotAnObject,
    ),
    (b"\"{}\"" as &[u8], Rejection::NotAnObject),
    (b"null" as &[u8], Rejection::NotAnObject),
    (
        b"{\"prediction\":\"a\",\"label\":\"a\"}}" as &[u8],
        Rejection::InvalidJson,
    ),
    (
        b"{\"prediction\":\"a\",\"label\":NaN}" as &[u8],
        Rejection::InvalidJson,
    ),
];

/// Bytes that cannot spell a field name predmon reads (no letter of `prediction`,
/// `label`, no `u` for escapes) nor a newline: whatever they form is rejected.
const GARBAGE: &[u8] = b"{}[]\":,0123456789.-+ \t\r\x00\x01\x1fxyzXYZ\\/\x80\xbf\xc3\xe2\xf0\xff";

fn malformed() -> impl Strategy<Value = (Vec<u8>, Expect)> {
    let garbage = prop::collection::vec(prop::sample::select(GARBAGE), 1..40).prop_filter_map(
        "not blank",
        |b| {
            let b = b.strip_suffix(b"\r").map(<[u8]>::to_vec).unwrap_or(b);
            (!b.iter().all(u8::is_ascii_whitespace)).then_some((
                b,
                Expect::OneOf(&[
                    Rejection::InvalidUtf8,
                    Rejection::InvalidJson,
                    Rejection::NotAnObject,
                    Rejection::NoPredictionOrLabel,
                ]),
            ))
        },
    );
    let base = || valid().prop_map(|s| render(&[s]).remove(0));
    let cut = (base(), any::<prop::sample::Index>()).prop_map(|(line, at)| {
        // A proper prefix of an object is never a JSON value.
        let cut = &line[..at.index(line.len() - 1) + 1];
        let why = match std::str::from_utf8(cut) {
            Ok(_) => Rejection::InvalidJson,
            Err(_) => Rejection::InvalidUtf8,
        };
        (cut.to_vec(), Expect::Exactly(why))
    });
    let nul = (base(), any::<prop::sample::Index>()).prop_map(|(mut line, at)| {
        line.insert(at.index(line.len() + 1), 0);
        // Inside a multi-byte character, the NUL breaks the UTF-8 first.
        let why = match std::str::from_utf8(&line) {
            Ok(_) => Rejection::InvalidJson,
            Err(_) => Rejection::InvalidUtf8,
        };
        (line, Expect::Exactly(why))
    });
    let not_utf8 = (
        base(),
        any::<prop::sample::Index>(),
        prop::sample::select(&[0x80u8, 0xc0, 0xf5, 0xff][..]),
    )
        .prop_map(|(mut line, at, b)| {
            line.insert(at.index(line.len() + 1), b);
            (line, Expect::Exactly(Rejection::InvalidUtf8))
        });
    let poisoned = (prop::sample::select(&POISON[..]), 0..CLASSES.len()).prop_map(
        |((field, value, why), c)| {
            let mut fields = vec![
                ("model".to_string(), "\"m1\"".to_string()),
                ("prediction".to_string(), json!(CLASSES[c]).to_string()),
                ("label".to_string(), "\"a\"".to_string()),
            ];
            match fields.iter_mut().find(|(k, _)| k == field) {
                Some(f) => f.1 = value.to_string(),
                None => fields.push((field.to_string(), value.to_string())),
            }
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            (
                format!("{{{}}}", body.join(",")).into_bytes(),
                Expect::Exactly(why),
            )
        },
    );
    let shapes =
        prop::sample::select(&SHAPES[..]).prop_map(|(l, why)| (l.to_vec(), Expect::Exactly(why)));
    prop_oneof![garbage, cut, nul, not_utf8, poisoned, shapes]
}

struct Run {
    report: Value,
    outcomes: Vec<Result<(), Rejection>>,
    read: u64,
}

/// Joins the lines with `\n` (or `\r\n`), splits them again in chunks of `chunk` bytes,
/// and feeds them to a pipeline.
fn run(lines: &[Vec<u8>], crlf: bool, chunk: usize) -> Run {
    let mut bytes = Vec::new();
    for l in lines {
        bytes.extend_from_slice(l);
        bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
    }
    let mut p = Pipeline::new(&Settings::default(), Mode::Report, None, &["t"]);
    let mut splitter = LineSplitter::new(p.decoder.max_event_bytes());
    let mut outcomes = Vec::new();
    let mut feed = |p: &mut Pipeline, l: Line<'_>| match l {
        Line::Event(b) => outcomes.push(p.ingest(0, b, 0)),
        Line::TooLarge => unreachable!("no line is that long"),
    };
    for piece in bytes.chunks(chunk.max(1)) {
        splitter.feed(piece, |l| feed(&mut p, l));
    }
    splitter.finish(|l| feed(&mut p, l));
    let read = p.sources[0].read;
    Run {
        report: scope_json(&mut p, ScopeId::All),
        outcomes,
        read,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn malformed_lines_get_one_outcome_each_and_change_nothing_else(
        samples in prop::collection::vec(valid(), 0..60),
        bad in prop::collection::vec((malformed(), any::<prop::sample::Index>()), 1..40),
        crlf in any::<bool>(),
        chunk in 1..300usize,
    ) {
        let clean = render(&samples);
        // Where each bad line goes; `None` marks a valid line.
        let mut dirty: Vec<(Vec<u8>, Option<Expect>)> =
            clean.iter().map(|l| (l.clone(), None)).collect();
        for ((line, expect), at) in &bad {
            let at = at.index(dirty.len() + 1);
            dirty.insert(at, (line.clone(), Some(expect.clone())));
        }
        let dirty_lines: Vec<Vec<u8>> = dirty.iter().map(|(l, _)| l.clone()).collect();
        let a = run(&clean, crlf, chunk);
        let b = run(&dirty_lines, crlf, chunk);

        // Exactly one outcome per line, in order, and the right one for each bad line.
        prop_assert_eq!(b.outcomes.len(), dirty.len());
        prop_assert_eq!(b.read, dirty.len() as u64);
        let mut rejected = std::collections::BTreeMap::<&str, u64>::new();
        for ((line, expect), got) in dirty.iter().zip(&b.outcomes) {
            let shown = String::from_utf8_lossy(line);
            match expect {
                None => prop_assert_eq!(got, &Ok(()), "valid line {}", shown),
                Some(Expect::Exactly(why)) => prop_assert_eq!(got, &Err(*why), "{}", shown),
                Some(Expect::OneOf(whys)) => {
                    prop_assert!(got.is_err_and(|w| whys.contains(&w)), "{} gave {:?}", shown, got)
                }
            }
            if let Err(why) = got {
                *rejected.entry(why.code()).or_default() += 1;
            }
        }
        // The counters say the same; the valid lines around are counted as without them.
        let counted: std::collections::BTreeMap<&str, u64> = b.report["events"]["rejected"]
            .as_object().unwrap().iter()
            .map(|(k, v)| (Rejection::from_code(k).unwrap().code(), v.as_u64().unwrap()))
            .collect();
        prop_assert_eq!(counted, rejected);
        prop_assert_eq!(&b.report["events"]["accepted"], &a.report["events"]["accepted"]);
        prop_assert_eq!(&b.report["models"], &a.report["models"]);
    }
}
