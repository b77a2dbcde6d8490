//! Bytes to [`Event`] or [`Rejection`]: one pass of serde_json over the line that
//! captures only the configured JSON Pointers as borrowed raw values (everything else
//! is skipped with `IgnoredAny`), then interprets those few values. No field is
//! copied unless it contains a JSON escape.

use std::borrow::Cow;
use std::fmt;

use rustc_hash::FxHashMap;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{ClassSets, Event, Rejection, Scores};
use crate::config::{Settings, TimestampUnit};

const MODEL: usize = 0;
const ID: usize = 1;
const PREDICTION: usize = 2;
const LABEL: usize = 3;
const SCORES: usize = 4;
const TIMESTAMP: usize = 5;
const SEGMENT: usize = 6;
const FIELDS: usize = 7;

type Captured<'a> = [Option<&'a RawValue>; FIELDS];

/// The configured pointers merged into a tree, so one walk of the document finds them all.
#[derive(Debug, Clone, Default)]
struct PointerTrie {
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Clone, Default)]
struct TrieNode {
    children: Vec<Child>,
    /// Which fields this node's value is (several fields may share a pointer).
    fields: Vec<usize>,
}

impl PointerTrie {
    fn new(pointers: [&[String]; FIELDS]) -> PointerTrie {
        let mut trie = PointerTrie {
            nodes: vec![TrieNode::default()],
        };
        for (field, segments) in pointers.into_iter().enumerate() {
            // No pointer: an optional field that is not configured (`segment`).
            if segments.is_empty() {
                continue;
            }
            let mut node = 0;
            for seg in segments {
                node = match trie.nodes[node].children.iter().find(|c| c.key == *seg) {
                    Some(c) => c.node,
                    None => {
                        trie.nodes.push(TrieNode::default());
                        let child = trie.nodes.len() - 1;
                        trie.nodes[node].children.push(Child {
                            head: head_of(seg.as_bytes()),
                            key: seg.clone(),
                            node: child,
                        });
                        child
                    }
                };
            }
            trie.nodes[node].fields.push(field);
        }
        trie
    }
}

/// Decodes lines according to the `[fields]`, `[limits]` and `[[models]]` configuration.
#[derive(Debug, Clone)]
pub struct Decoder {
    trie: PointerTrie,
    unit: TimestampUnit,
    default_model: String,
    max_event_bytes: usize,
    configured_classes: FxHashMap<String, Vec<String>>,
    /// Binary models with a `threshold` (extension E6): events with scores and no
    /// prediction are predicted from the positive class's score.
    thresholded: FxHashMap<String, Thresholded>,
    /// Models whose predictions and labels are arrays of classes (extension E7).
    multi_label: rustc_hash::FxHashSet<String>,
    max_classes: usize,
}

#[derive(Debug, Clone)]
struct Thresholded {
    threshold: f64,
    /// Index of the positive class among the model's two configured classes.
    positive: usize,
}

impl Decoder {
    pub fn new(settings: &Settings) -> Decoder {
        let f = &settings.fields;
        Decoder {
            trie: PointerTrie::new([
                &f.model,
                &f.id,
                &f.prediction,
                &f.label,
                &f.scores,
                &f.timestamp,
                f.segment.as_deref().unwrap_or(&[]),
            ]),
            unit: f.timestamp_unit,
            default_model: f.default_model.clone(),
            max_event_bytes: settings.limits.max_event_bytes,
            configured_classes: settings
                .models
                .iter()
                .filter_map(|m| m.classes.clone().map(|c| (m.name.clone(), c)))
                .collect(),
            thresholded: settings
                .models
                .iter()
                .filter_map(|m| {
                    let classes = m.classes.as_ref()?;
                    let positive = classes
                        .iter()
                        .position(|c| Some(c) == m.positive_class.as_ref())?;
                    Some((
                        m.name.clone(),
                        Thresholded {
                            threshold: m.threshold?,
                            positive,
                        },
                    ))
                })
                .collect(),
            multi_label: settings.multi_label_models(),
            max_classes: settings.limits.max_classes,
        }
    }

    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// The configured classes of a model, if any.
    pub fn classes_of(&self, model: &str) -> Option<&[String]> {
        self.configured_classes.get(model).map(Vec::as_slice)
    }

    /// Decodes one line (without its terminator). Every line yields exactly one outcome.
    pub fn decode<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, Rejection> {
        if line.len() > self.max_event_bytes {
            return Err(Rejection::TooLarge);
        }
        let text = std::str::from_utf8(line).map_err(|_| Rejection::InvalidUtf8)?;
        let mut de = serde_json::Deserializer::from_str(text);
        if !text
            .trim_start_matches([' ', '\t', '\r', '\n'])
            .starts_with('{')
        {
            // Not an object, if JSON at all: checked without converting anything, so
            // that a number beyond f64 (`1e400`) is valid JSON here as everywhere else.
            <IgnoredAny as de::Deserialize>::deserialize(&mut de)
                .map_err(|_| Rejection::InvalidJson)?;
            de.end().map_err(|_| Rejection::InvalidJson)?;
            return Err(Rejection::NotAnObject);
        }
        let mut captured: Captured<'a> = [None; FIELDS];
        let is_object = RootSeed {
            trie: &self.trie,
            out: &mut captured,
        }
        .deserialize(&mut de)
        .map_err(|_| Rejection::InvalidJson)?;
        de.end().map_err(|_| Rejection::InvalidJson)?;
        if !is_object {
            return Err(Rejection::NotAnObject);
        }
        self.interpret(&captured)
    }

    fn interpret<'a>(&self, c: &Captured<'a>) -> Result<Event<'a>, Rejection> {
        let present = |i: usize| c[i].filter(|raw| raw.get() != "null");
        let (raw_prediction, raw_label) = (present(PREDICTION), present(LABEL));
        // Scores alone predict for a model with a threshold (extension E6).
        let scores_only = raw_prediction.is_none()
            && raw_label.is_none()
            && present(SCORES).is_some()
            && !self.thresholded.is_empty();
        if raw_prediction.is_none() && raw_label.is_none() && !scores_only {
            return Err(Rejection::NoPredictionOrLabel);
        }
        let model = match present(MODEL) {
            // One small allocation per event without a model field: borrowing would tie
            // events to the decoder's lifetime, and leaking the name (tried) is a leak to
            // LeakSanitizer in the fuzz targets, which build a decoder per input.
            None => Cow::Owned(self.default_model.clone()),
            Some(raw) => match scalar_text(raw) {
                Some(Scalar::Text(s)) | Some(Scalar::Integer(s)) => s,
                _ => return Err(Rejection::BadClass),
            },
        };
        let class = |raw: Option<&'a RawValue>| -> Result<Option<Cow<'a, str>>, Rejection> {
            match raw.map(scalar_text) {
                None => Ok(None),
                Some(Some(Scalar::Text(s) | Scalar::Integer(s) | Scalar::Bool(s))) => Ok(Some(s)),
                Some(None) => Err(Rejection::BadClass),
            }
        };
        let thresholded = if self.thresholded.is_empty() {
            None
        } else {
            self.thresholded.get(model.as_ref())
        };
        if scores_only && thresholded.is_none() {
            return Err(Rejection::NoPredictionOrLabel);
        }
        if !self.multi_label.is_empty() && self.multi_label.contains(model.as_ref()) {
            return self.interpret_multi(c, model, [raw_prediction, raw_label]);
        }
        let prediction = class(raw_prediction)?;
        let label = class(raw_label)?;
        let timestamp_ns = match present(TIMESTAMP) {
            None => None,
            Some(raw) => {
                Some(parse_timestamp(raw.get(), self.unit).ok_or(Rejection::BadTimestamp)?)
            }
        };
        let configured = self
            .configured_classes
            .get(model.as_ref())
            .map(Vec::as_slice);
        let scores = match present(SCORES) {
            None => None,
            Some(raw) => Some(match (thresholded, raw.get().as_bytes()[0]) {
                // The bare probability of the positive class.
                (Some(t), b'0'..=b'9' | b'-') => {
                    let p: f64 =
                        serde_json::from_str(raw.get()).map_err(|_| Rejection::BadScores)?;
                    if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
                        return Err(Rejection::BadScores);
                    }
                    let mut ps = vec![1.0 - p; 2];
                    ps[t.positive] = p;
                    Scores::Array(ps)
                }
                _ => parse_scores(raw.get(), configured).ok_or(Rejection::BadScores)?,
            }),
        };
        let prediction = match (prediction, thresholded, &scores) {
            (None, Some(t), Some(scores)) => {
                let classes = configured.expect("a threshold needs configured classes");
                let p = scores.probability_of(&classes[t.positive], configured);
                let predicted = if p >= t.threshold {
                    t.positive
                } else {
                    1 - t.positive
                };
                Some(Cow::Owned(classes[predicted].clone()))
            }
            (prediction, _, _) => prediction,
        };
        let id = match present(ID).map(scalar_text) {
            Some(Some(Scalar::Text(s) | Scalar::Integer(s))) => Some(s),
            _ => None,
        };
        let is_half = prediction.is_none() || label.is_none();
        if is_half && id.is_none() {
            return Err(Rejection::MissingId);
        }
        if let Some(classes) = configured {
            let known = |c: &Option<Cow<'a, str>>| {
                c.as_ref().is_none_or(|c| classes.iter().any(|k| k == c))
            };
            if !known(&prediction) || !known(&label) {
                return Err(Rejection::UnknownClass);
            }
        }
        let segment = present(SEGMENT).and_then(segment_text);
        Ok(Event {
            model,
            id,
            prediction,
            label,
            scores,
            timestamp_ns,
            sets: None,
            segment,
        })
    }

    /// A multi-label model's event (extension E7): prediction and label are arrays of
    /// classes. Scores are neither read nor validated.
    fn interpret_multi<'a>(
        &self,
        c: &Captured<'a>,
        model: Cow<'a, str>,
        raw: [Option<&'a RawValue>; 2],
    ) -> Result<Event<'a>, Rejection> {
        let mut sets: ClassSets<'a> = [None, None];
        for (set, raw) in sets.iter_mut().zip(raw) {
            if let Some(raw) = raw {
                *set = Some(self.class_set(raw)?);
            }
        }
        let timestamp_ns = match c[TIMESTAMP].filter(|raw| raw.get() != "null") {
            None => None,
            Some(raw) => {
                Some(parse_timestamp(raw.get(), self.unit).ok_or(Rejection::BadTimestamp)?)
            }
        };
        let id = match c[ID].filter(|raw| raw.get() != "null").map(scalar_text) {
            Some(Some(Scalar::Text(s) | Scalar::Integer(s))) => Some(s),
            _ => None,
        };
        if (sets[0].is_none() || sets[1].is_none()) && id.is_none() {
            return Err(Rejection::MissingId);
        }
        if let Some(classes) = self.configured_classes.get(model.as_ref()) {
            let known = |c: &Cow<'a, str>| classes.iter().any(|k| k == c);
            if !sets.iter().flatten().flatten().all(known) {
                return Err(Rejection::UnknownClass);
            }
        }
        Ok(Event {
            model,
            id,
            prediction: None,
            label: None,
            scores: None,
            timestamp_ns,
            sets: Some(Box::new(sets)),
            // Multi-label counts are kept per model, not per segment (E4, E7).
            segment: None,
        })
    }

    /// A JSON array of classes, each read as a scalar class, duplicates collapsed.
    /// A scalar class is `not_a_class_set`; more than `limits.max_classes` entries is
    /// `class_limit` (before collapsing, so a huge array costs nothing to refuse).
    fn class_set<'a>(&self, raw: &'a RawValue) -> Result<Vec<Cow<'a, str>>, Rejection> {
        if scalar_text(raw).is_some() {
            return Err(Rejection::NotAClassSet);
        }
        if !raw.get().starts_with('[') {
            return Err(Rejection::BadClass);
        }
        let items: Vec<&'a RawValue> =
            serde_json::from_str(raw.get()).map_err(|_| Rejection::BadClass)?;
        if items.len() > self.max_classes {
            return Err(Rejection::ClassLimit);
        }
        let mut set = Vec::with_capacity(items.len());
        for item in items {
            match scalar_text(item) {
                Some(Scalar::Text(s) | Scalar::Integer(s) | Scalar::Bool(s)) => set.push(s),
                None => return Err(Rejection::BadClass),
            }
        }
        set.sort_unstable();
        set.dedup();
        Ok(set)
    }
}

enum Scalar<'a> {
    Text(Cow<'a, str>),
    Integer(Cow<'a, str>),
    Bool(Cow<'a, str>),
}

/// Reads a JSON string, integer or boolean as the string predmon compares by.
/// Integers keep their decimal text (any size, `-0` is `0`); anything else is `None`.
fn scalar_text(raw: &RawValue) -> Option<Scalar<'_>> {
    let s = raw.get();
    match s.as_bytes().first()? {
        b'"' => {
            if has_backslash(s) {
                serde_json::from_str::<String>(s)
                    .ok()
                    .map(|v| Scalar::Text(Cow::Owned(v)))
            } else {
                Some(Scalar::Text(Cow::Borrowed(&s[1..s.len() - 1])))
            }
        }
        b't' => Some(Scalar::Bool(Cow::Borrowed("true"))),
        b'f' => Some(Scalar::Bool(Cow::Borrowed("false"))),
        b'-' | b'0'..=b'9' => {
            if !s.bytes().skip(1).all(|b| b.is_ascii_digit()) {
                return None; // a fraction or exponent: not an integer class
            }
            Some(Scalar::Integer(Cow::Borrowed(if s == "-0" {
                "0"
            } else {
                s
            })))
        }
        _ => None,
    }
}

/// A segment value (extension E4): a string as is, a number as written, a boolean as
/// `true`/`false`. An empty string, an object or an array is no segment: the event still
/// counts for its model.
fn segment_text(raw: &RawValue) -> Option<Cow<'_, str>> {
    match scalar_text(raw) {
        Some(Scalar::Text(s) | Scalar::Integer(s) | Scalar::Bool(s)) => {
            (!s.is_empty()).then_some(s)
        }
        None => {
            matches!(raw.get().as_bytes()[0], b'-' | b'0'..=b'9').then(|| Cow::Borrowed(raw.get()))
        }
    }
}

/// Whether a (short) JSON string has an escape. A branch-free fold, which the compiler
/// vectorises: `str::contains` costs more in setup than the scan on strings this short.
#[inline]
fn has_backslash(s: &str) -> bool {
    s.bytes().fold(false, |found, b| found | (b == b'\\'))
}

/// A timestamp in nanoseconds since the epoch: RFC 3339 text (an offset is required) or a
/// number in `unit`, possibly with a fraction. `None` when it is neither or out of range.
pub fn parse_timestamp(raw: &str, unit: TimestampUnit) -> Option<i64> {
    match raw.as_bytes().first()? {
        b'"' => {
            let text: Cow<str> = if has_backslash(raw) {
                Cow::Owned(serde_json::from_str::<String>(raw).ok()?)
            } else {
                Cow::Borrowed(&raw[1..raw.len() - 1])
            };
            if let Some(ns) = utc_rfc3339_nanos(text.as_bytes()) {
                return Some(ns);
            }
            let t =
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .ok()?;
            i64::try_from(t.unix_timestamp_nanos()).ok()
        }
        b'-' | b'0'..=b'9' => parse_decimal_nanos(raw, unit.nanos_per_unit()),
        _ => None,
    }
}

/// The shape nearly every producer writes, `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (1 to 9
/// fraction digits, years 1970 to 2199), in nanoseconds, several times faster than the
/// general parser. `None` for anything else, which the general RFC 3339 parser then
/// decides: this only ever accepts what that parser accepts, with the same value.
fn utc_rfc3339_nanos(b: &[u8]) -> Option<i64> {
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[b.len() - 1] != b'Z'
    {
        return None;
    }
    #[inline(always)]
    fn digit(c: u8) -> Option<i64> {
        let d = c.wrapping_sub(b'0');
        (d < 10).then_some(i64::from(d))
    }
    let two = |i: usize| Some(digit(b[i])? * 10 + digit(b[i + 1])?);
    let year = two(0)? * 100 + two(2)?;
    let (month, day) = (two(5)?, two(8)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1970..2200).contains(&year)
        || !(1..=month_days).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut nanos = 0i64;
    let fraction = &b[19..b.len() - 1];
    if !fraction.is_empty() {
        let digits = fraction.strip_prefix(b".")?;
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        for &c in digits {
            nanos = nanos * 10 + digit(c)?;
        }
        nanos *= 10i64.pow(9 - digits.len() as u32);
    }
    // Days from the civil date (Howard Hinnant's algorithm), March-based years.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((days * 86_400 + hour * 3600 + minute * 60 + second) * 1_000_000_000 + nanos)
}

/// A JSON number times `per_unit`, exact for plain decimals, via f64 for exponents.
fn parse_decimal_nanos(text: &str, per_unit: i64) -> Option<i64> {
    if text.contains(['e', 'E']) {
        let v = text.parse::<f64>().ok()? * per_unit as f64;
        return (v.is_finite() && v.abs() < 9.2e18).then(|| v.round() as i64);
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let whole: i128 = whole.parse().ok()?;
    let mut nanos = whole.checked_mul(per_unit as i128)?;
    // Digits of the fraction beyond a nanosecond are dropped (truncation toward zero).
    let mut scale = per_unit as i128;
    for d in fraction.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        // Checked: a whole part near i128::MAX / per_unit would overflow here.
        nanos = nanos.checked_add((d - b'0') as i128 * scale)?;
    }
    let nanos = if negative { -nanos } else { nanos };
    i64::try_from(nanos).ok()
}

/// Validates scores: an object of class -> p, or an array matching the configured
/// classes; every p finite and within [0, 1].
fn parse_scores<'a>(raw: &'a str, classes: Option<&[String]>) -> Option<Scores<'a>> {
    let valid = |p: f64| p.is_finite() && (0.0..=1.0).contains(&p);
    match raw.as_bytes().first()? {
        b'{' => {
            let mut de = serde_json::Deserializer::from_str(raw);
            let pairs = de.deserialize_map(ScoreObjectVisitor).ok()?;
            let ok = pairs
                .iter()
                .all(|(k, p)| valid(*p) && classes.is_none_or(|cs| cs.iter().any(|c| c == k)));
            ok.then_some(Scores::Object(pairs))
        }
        b'[' => {
            let classes = classes?;
            let ps: Vec<f64> = serde_json::from_str(raw).ok()?;
            (ps.len() == classes.len() && ps.iter().all(|p| valid(*p))).then_some(Scores::Array(ps))
        }
        _ => None,
    }
}

struct ScoreObjectVisitor;

impl<'de> Visitor<'de> for ScoreObjectVisitor {
    type Value = Vec<(Cow<'de, str>, f64)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of class probabilities")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some(key) = map.next_key_seed(CowKey)? {
            pairs.push((key, map.next_value::<f64>()?));
        }
        Ok(pairs)
    }
}

/// A map key, borrowed unless it contains an escape.
struct CowKey;

impl<'de> DeserializeSeed<'de> for CowKey {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for CowKey {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// The top-level value: walks it if it is an object, and reports whether it was.
struct RootSeed<'t, 'c, 'de> {
    trie: &'t PointerTrie,
    out: &'c mut Captured<'de>,
}

impl<'de> DeserializeSeed<'de> for RootSeed<'_, '_, 'de> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(NodeVisitor {
            trie: self.trie,
            node: 0,
            out: self.out,
        })
    }
}

/// A value at trie node `node`: captured raw if it is a field, walked if it has children.
struct NodeSeed<'t, 'c, 'de> {
    trie: &'t PointerTrie,
    node: usize,
    out: &'c mut Captured<'de>,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let node = &self.trie.nodes[self.node];
        if node.fields.is_empty() {
            d.deserialize_any(NodeVisitor {
                trie: self.trie,
                node: self.node,
                out: self.out,
            })?;
            return Ok(());
        }
        let raw: &'de RawValue = de::Deserialize::deserialize(d)?;
        for &field in &node.fields {
            self.out[field] = Some(raw);
        }
        if !node.children.is_empty() {
            // A pointer and a pointer below it (rare): walk the captured text again.
            let mut inner = serde_json::Deserializer::from_str(raw.get());
            inner
                .deserialize_any(NodeVisitor {
                    trie: self.trie,
                    node: self.node,
                    out: self.out,
                })
                .map_err(de::Error::custom)?;
        }
        Ok(())
    }
}

struct NodeVisitor<'t, 'c, 'de> {
    trie: &'t PointerTrie,
    node: usize,
    out: &'c mut Captured<'de>,
}

impl<'de> Visitor<'de> for NodeVisitor<'_, '_, 'de> {
    /// Whether the value was an object.
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let children = &self.trie.nodes[self.node].children;
        while let Some(child) = map.next_key_seed(KeyMatch { children })? {
            match child {
                Some(node) => map.next_value_seed(NodeSeed {
                    trie: self.trie,
                    node,
                    out: self.out,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let children = &self.trie.nodes[self.node].children;
        let mut index = 0usize;
        loop {
            let wanted = children.iter().find(|c| {
                let k = &c.key;
                k.parse::<usize>().ok() == Some(index) && (k == "0" || !k.starts_with('0'))
            });
            let more = match wanted {
                Some(&Child { node, .. }) => seq
                    .next_element_seed(NodeSeed {
                        trie: self.trie,
                        node,
                        out: self.out,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(false);
            }
            index += 1;
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// Matches a map key against a node's children without allocating.
struct KeyMatch<'t> {
    children: &'t [Child],
}

impl<'de> DeserializeSeed<'de> for KeyMatch<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyMatch<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        let v = v.as_bytes();
        let head = head_of(v);
        // Length and first 8 bytes decide almost every key without a call to memcmp.
        Ok(self
            .children
            .iter()
            .find(|c| {
                c.head == head
                    && c.key.len() == v.len()
                    && (v.len() <= 8 || c.key.as_bytes()[8..] == v[8..])
            })
            .map(|c| c.node))
    }
}

/// A child of a trie node: the key (an object member name or an array index).
#[derive(Debug, Clone)]
struct Child {
    key: String,
    /// [`head_of`] the key.
    head: u64,
    node: usize,
}

/// The first 8 bytes of a key, zero-padded, as one integer.
#[inline]
fn head_of(key: &[u8]) -> u64 {
    let mut head = 0u64;
    for (i, &b) in key.iter().take(8).enumerate() {
        head |= u64::from(b) << (8 * i);
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::{RawConfig, RawModel};

    fn decoder_with(edit: impl FnOnce(&mut RawConfig)) -> Decoder {
        let mut raw = RawConfig::default();
        edit(&mut raw);
        Decoder::new(&Settings::from_raw(raw).unwrap())
    }

    fn reject(d: &Decoder, line: &[u8]) -> Rejection {
        d.decode(line).expect_err(&String::from_utf8_lossy(line))
    }

    #[test]
    fn complete_event_borrows_its_fields() {
        let d = decoder_with(|_| {});
        let e = d
            .decode(br#"{"model":"fraud","id":7,"prediction":"legit","label":1,"timestamp":"2024-01-01T00:00:10Z","extra":{"x":[1,2]}}"#)
            .unwrap();
        assert_eq!(e.model, "fraud");
        assert!(matches!(e.model, Cow::Borrowed(_)));
        assert_eq!(e.id.as_deref(), Some("7"));
        assert_eq!(e.prediction.as_deref(), Some("legit"));
        assert_eq!(e.label.as_deref(), Some("1"));
        assert_eq!(e.timestamp_ns, Some(1_704_067_210_000_000_000));
    }

    #[test]
    fn classes_normalise_to_strings() {
        let d = decoder_with(|_| {});
        let e = d
            .decode(br#"{"prediction":true,"label":-0,"id":"a\"b"}"#)
            .unwrap();
        assert_eq!(e.prediction.as_deref(), Some("true"));
        assert_eq!(e.label.as_deref(), Some("0"));
        assert_eq!(e.model, "default");
        let e = d
            .decode(br#"{"prediction":123456789012345678901234567890,"label":"\u0041"}"#)
            .unwrap();
        assert_eq!(
            e.prediction.as_deref(),
            Some("123456789012345678901234567890")
        );
        assert_eq!(e.label.as_deref(), Some("A"));
        for bad in [
            &br#"{"prediction":2.0,"label":1}"#[..],
            br#"{"prediction":[1],"label":1}"#,
            br#"{"prediction":1,"label":1e3}"#,
            br#"{"prediction":1,"label":{}}"#,
        ] {
            assert_eq!(reject(&d, bad), Rejection::BadClass);
        }
    }

    #[test]
    fn nested_and_escaped_pointers() {
        let d = decoder_with(|r| {
            r.fields.label = "/feedback/actual".into();
            r.fields.prediction = "/out/0".into();
            r.fields.model = "/meta/a~1b".into();
        });
        let e = d
            .decode(br#"{"meta":{"a/b":"m"},"out":["x","y"],"feedback":{"actual":"x","other":1}}"#)
            .unwrap();
        assert_eq!(
            (
                e.model.as_ref(),
                e.prediction.as_deref(),
                e.label.as_deref()
            ),
            ("m", Some("x"), Some("x"))
        );
        // The parent is not an object: the field is absent.
        assert_eq!(
            reject(&d, br#"{"feedback":5,"out":7}"#),
            Rejection::NoPredictionOrLabel
        );
    }

    #[test]
    fn each_structural_rejection() {
        let d = decoder_with(|r| r.limits.max_event_bytes = 64);
        assert_eq!(
            reject(&d, b"{\"prediction\":\"\xff\",\"label\":1}"),
            Rejection::InvalidUtf8
        );
        assert_eq!(reject(&d, b"{\"prediction\":1,"), Rejection::InvalidJson);
        assert_eq!(
            reject(&d, b"{\"prediction\":1,\"label\":1} x"),
            Rejection::InvalidJson
        );
        assert_eq!(
            reject(&d, b"{\"prediction\":NaN,\"label\":1}"),
            Rejection::InvalidJson
        );
        assert_eq!(reject(&d, b"[1,2]"), Rejection::NotAnObject);
        assert_eq!(reject(&d, b"\"x\""), Rejection::NotAnObject);
        assert_eq!(reject(&d, b"[1,"), Rejection::InvalidJson);
        let long = format!(
            "{{\"prediction\":1,\"label\":1,\"pad\":\"{}\"}}",
            "x".repeat(64)
        );
        assert_eq!(reject(&d, long.as_bytes()), Rejection::TooLarge);
        assert_eq!(
            reject(&d, b"{\"model\":\"m\"}"),
            Rejection::NoPredictionOrLabel
        );
        assert_eq!(
            reject(&d, b"{\"prediction\":null,\"label\":null}"),
            Rejection::NoPredictionOrLabel
        );
        assert_eq!(reject(&d, b"{\"prediction\":1}"), Rejection::MissingId);
        assert_eq!(
            reject(&d, b"{\"label\":1,\"id\":1.5}"),
            Rejection::MissingId
        );
        // Skipped values are walked iteratively by serde_json: deep nesting is valid JSON
        // and costs no stack.
        let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let d_big = decoder_with(|_| {});
        assert_eq!(reject(&d_big, nested.as_bytes()), Rejection::NotAnObject);
        let inside = format!(
            "{{\"prediction\":1,\"label\":1,\"x\":{}{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(d_big.decode(inside.as_bytes()).is_ok());
        let in_scores = format!(
            "{{\"prediction\":1,\"label\":1,\"scores\":{}{}}}",
            "{\"a\":".repeat(10_000),
            "1".to_string() + &"}".repeat(10_000)
        );
        assert_eq!(reject(&d_big, in_scores.as_bytes()), Rejection::BadScores);
    }

    #[test]
    fn timestamps() {
        let unit = TimestampUnit::Seconds;
        assert_eq!(
            parse_timestamp("1700000000", unit),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_timestamp("1700000000.25", unit),
            Some(1_700_000_000_250_000_000)
        );
        assert_eq!(parse_timestamp("-1.5", unit), Some(-1_500_000_000));
        assert_eq!(
            parse_timestamp("1.7e9", unit),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_timestamp("1500", TimestampUnit::Millis),
            Some(1_500_000_000)
        );
        assert_eq!(
            parse_timestamp("1700000000123456", TimestampUnit::Micros),
            Some(1_700_000_000_123_456_000)
        );
        assert_eq!(
            parse_timestamp("1700000000123456789", TimestampUnit::Nanos),
            Some(1_700_000_000_123_456_789),
            "nanoseconds stay exact past 2^53"
        );
        assert_eq!(parse_timestamp("2.5", TimestampUnit::Micros), Some(2_500));
        assert_eq!(parse_timestamp("2.5", TimestampUnit::Nanos), Some(2));
        assert_eq!(
            parse_timestamp("\"1970-01-01T01:00:00.123456789+01:00\"", unit),
            Some(123_456_789)
        );
        assert_eq!(
            parse_timestamp("\"2024-01-01T00:00:00\"", unit),
            None,
            "no offset"
        );
        assert_eq!(
            parse_timestamp("\"2024-02-30T00:00:00Z\"", unit),
            None,
            "impossible date"
        );
        assert_eq!(parse_timestamp("1e300", unit), None);
        assert_eq!(parse_timestamp("true", unit), None);
        let d = decoder_with(|_| {});
        assert_eq!(
            reject(&d, br#"{"prediction":1,"label":1,"timestamp":[1]}"#),
            Rejection::BadTimestamp
        );
        assert!(d
            .decode(br#"{"prediction":1,"label":1,"timestamp":null}"#)
            .unwrap()
            .timestamp_ns
            .is_none());
    }

    #[test]
    fn utc_fast_path_agrees_with_the_rfc3339_parser() {
        let general = |t: &str| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .ok()
                .and_then(|t| i64::try_from(t.unix_timestamp_nanos()).ok())
        };
        let mut texts: Vec<String> = [
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59.999999999Z",
            "2023-02-29T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2000-02-29T12:00:00.5Z",
            "2024-04-31T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T23:60:00Z",
            "2024-01-01T23:59:60Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.1234567890Z",
            "2024-01-01t00:00:00z",
            "2024-01-01T00:00:00+01:00",
            "2024-01-01T00:00:00",
            "1969-12-31T23:59:59.9Z",
            "2199-12-31T23:59:59.123Z",
            "2024-1-01T00:00:00Z",
            "2024-01-01T00:00:0xZ",
        ]
        .map(String::from)
        .to_vec();
        // Every day of 1970-2199 at a time and fraction that vary with it.
        let mut t = 0i64;
        while t < 7_258_118_400 {
            let f = t % 1_000_000_007;
            let s = time::OffsetDateTime::from_unix_timestamp(t + t % 86_399)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            texts.push(s.clone());
            texts.push(format!(
                "{}.{:0w$}Z",
                &s[..19],
                f % 10i64.pow((t % 9 + 1) as u32),
                w = (t % 9 + 1) as usize
            ));
            t += 86_400 + 3_607;
        }
        for text in &texts {
            let fast = utc_rfc3339_nanos(text.as_bytes());
            if fast.is_some() {
                assert_eq!(fast, general(text), "{text}");
            }
            assert_eq!(
                parse_timestamp(&format!("\"{text}\""), TimestampUnit::Seconds),
                general(text),
                "{text}"
            );
        }
        assert!(utc_rfc3339_nanos(b"2024-01-01T00:00:00.25Z").is_some());
    }

    #[test]
    fn scores_object_array_and_rejections() {
        let d = decoder_with(|r| {
            r.models.push(RawModel {
                name: "m".into(),
                classes: Some(vec!["a".into(), "b".into()]),
                ..Default::default()
            })
        });
        let e = d
            .decode(br#"{"model":"m","prediction":"a","label":"b","scores":[0.25,0.75]}"#)
            .unwrap();
        let classes = d.classes_of("m");
        assert_eq!(
            e.scores.as_ref().unwrap().probability_of("b", classes),
            0.75
        );
        let e = d
            .decode(br#"{"prediction":"a","label":"b","scores":{"a":0.9,"b":0.1,"b":0.05}}"#)
            .unwrap();
        assert_eq!(e.scores.as_ref().unwrap().probability_of("b", None), 0.05);
        assert_eq!(e.scores.as_ref().unwrap().probability_of("zzz", None), 0.0);
        for bad in [
            &br#"{"prediction":"a","label":"b","scores":[0.5,0.5]}"#[..], // array without configured classes
            br#"{"model":"m","prediction":"a","label":"b","scores":[0.5]}"#,
            br#"{"model":"m","prediction":"a","label":"b","scores":{"c":0.5}}"#,
            br#"{"prediction":"a","label":"b","scores":{"a":1.5}}"#,
            br#"{"prediction":"a","label":"b","scores":{"a":"0.5"}}"#,
            br#"{"prediction":"a","label":"b","scores":{"a":1e999}}"#,
            br#"{"prediction":"a","label":"b","scores":0.5}"#,
        ] {
            assert_eq!(
                reject(&d, bad),
                Rejection::BadScores,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            reject(&d, br#"{"model":"m","prediction":"c","label":"a"}"#),
            Rejection::UnknownClass
        );
    }

    /// Extension E7: class sets normalise each member like a scalar class and collapse
    /// duplicates; scores of a multi-label event are not read.
    #[test]
    fn class_sets_normalise_and_collapse() {
        let d = decoder_with(|r| {
            r.models.push(RawModel {
                name: "tags".into(),
                multi_label: true,
                ..Default::default()
            })
        });
        let e = d
            .decode(br#"{"model":"tags","prediction":[1,"1",true,"ab",-0],"label":[],"scores":7}"#)
            .unwrap();
        let sets = e.sets.expect("a multi-label event");
        assert_eq!(
            sets[0].as_deref(),
            Some(&["0", "1", "ab", "true"].map(Cow::Borrowed)[..])
        );
        assert_eq!(sets[1].as_deref(), Some(&[][..]));
        assert!(e.prediction.is_none() && e.label.is_none() && e.scores.is_none());
        let half = d
            .decode(br#"{"model":"tags","id":"x","label":["b"]}"#)
            .unwrap();
        assert!(half.sets.unwrap()[0].is_none());
        // Other models are untouched: a set is a bad class there.
        assert_eq!(
            reject(&d, br#"{"prediction":["a"],"label":"a"}"#),
            Rejection::BadClass
        );
        assert!(d
            .decode(br#"{"prediction":"a","label":"a"}"#)
            .unwrap()
            .sets
            .is_none());
    }

    #[test]
    fn segment_values() {
        let d = decoder_with(|r| r.fields.segment = "/ctx/country".into());
        let seg = |ctx: &str| {
            let line = format!(r#"{{"prediction":1,"label":1,"ctx":{{"country":{ctx}}}}}"#);
            d.decode(line.as_bytes())
                .unwrap()
                .segment
                .map(|s| s.into_owned())
        };
        assert_eq!(seg(r#""de""#).as_deref(), Some("de"));
        assert_eq!(seg(r#""d\u0065""#).as_deref(), Some("de"));
        assert_eq!(seg("7").as_deref(), Some("7"));
        assert_eq!(seg("-0").as_deref(), Some("0"));
        assert_eq!(seg("1.50").as_deref(), Some("1.50"), "a number as written");
        assert_eq!(seg("true").as_deref(), Some("true"));
        for none in ["\"\"", "null", "[1]", "{\"a\":1}"] {
            assert_eq!(seg(none), None, "{none}");
        }
        // Not configured: no segment, whatever the event holds.
        let plain = decoder_with(|_| {});
        let e = plain
            .decode(br#"{"prediction":1,"label":1,"segment":"x"}"#)
            .unwrap();
        assert!(e.segment.is_none());
    }

    #[test]
    fn rejection_codes_round_trip() {
        for r in Rejection::ALL {
            assert_eq!(Rejection::from_code(r.code()), Some(r));
            assert_eq!(Rejection::ALL[r.index()], r);
        }
    }
}
