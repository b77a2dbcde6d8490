//! Events as predmon understands them (contract Section 1): the decoded [`Event`],
//! the fixed set of [`Rejection`] reasons, and [`decode`], which turns one line of
//! bytes into one or the other.

pub mod decode;

use std::borrow::Cow;

pub use decode::Decoder;

/// Why an event was not accepted. The set is fixed by the contract; [`Rejection::code`]
/// is the `reason` label of `predmon_events_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rejection {
    InvalidJson,
    NotAnObject,
    TooLarge,
    InvalidUtf8,
    MissingId,
    NoPredictionOrLabel,
    BadClass,
    BadScores,
    BadTimestamp,
    DuplicateId,
    UnknownClass,
    ClassLimit,
    ModelLimit,
    /// A scalar prediction or label for a multi-label model (extension E7).
    NotAClassSet,
}

impl Rejection {
    pub const ALL: [Rejection; 14] = [
        Rejection::InvalidJson,
        Rejection::NotAnObject,
        Rejection::TooLarge,
        Rejection::InvalidUtf8,
        Rejection::MissingId,
        Rejection::NoPredictionOrLabel,
        Rejection::BadClass,
        Rejection::BadScores,
        Rejection::BadTimestamp,
        Rejection::DuplicateId,
        Rejection::UnknownClass,
        Rejection::ClassLimit,
        Rejection::ModelLimit,
        Rejection::NotAClassSet,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Rejection::InvalidJson => "invalid_json",
            Rejection::NotAnObject => "not_an_object",
            Rejection::TooLarge => "too_large",
            Rejection::InvalidUtf8 => "invalid_utf8",
            Rejection::MissingId => "missing_id",
            Rejection::NoPredictionOrLabel => "no_prediction_or_label",
            Rejection::BadClass => "bad_class",
            Rejection::BadScores => "bad_scores",
            Rejection::BadTimestamp => "bad_timestamp",
            Rejection::DuplicateId => "duplicate_id",
            Rejection::UnknownClass => "unknown_class",
            Rejection::ClassLimit => "class_limit",
            Rejection::ModelLimit => "model_limit",
            Rejection::NotAClassSet => "not_a_class_set",
        }
    }

    pub fn from_code(code: &str) -> Option<Rejection> {
        Rejection::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Position in [`Rejection::ALL`], for dense counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Which half of a sample an event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Side {
    Prediction,
    Label,
}

impl Side {
    pub fn label(self) -> &'static str {
        match self {
            Side::Prediction => "prediction",
            Side::Label => "label",
        }
    }
}

/// Class probabilities as they arrived, still borrowed from the line. Validated by the
/// decoder; read with [`Scores::probability_of`].
#[derive(Debug, Clone)]
pub enum Scores<'a> {
    /// `{"class": p, ...}`; on duplicate keys the last wins, as in every JSON library.
    Object(Vec<(Cow<'a, str>, f64)>),
    /// `[p0, p1, ...]`, index i is the model's configured `classes[i]`.
    Array(Vec<f64>),
}

/// Scores held by a pending half, owned and packed into one allocation: per pair, p as
/// 8 little-endian bytes, then the class's length (LEB128) and its UTF-8 bytes. A list
/// of boxed strings took one allocation per class: with 10 classes, 560 bytes instead of
/// 176 per scored half (docs/BENCHMARKS.md, pending joins). Serialized, as in snapshots,
/// as the list of `[class, p]` pairs.
#[derive(Clone, PartialEq)]
pub struct OwnedScores(Box<[u8]>);

impl OwnedScores {
    pub fn from_pairs<'s>(pairs: impl IntoIterator<Item = (&'s str, f64)>) -> OwnedScores {
        let mut buf = Vec::new();
        for (class, p) in pairs {
            buf.extend_from_slice(&p.to_le_bytes());
            let mut n = class.len();
            while n >= 0x80 {
                buf.push((n & 0x7f) as u8 | 0x80);
                n >>= 7;
            }
            buf.push(n as u8);
            buf.extend_from_slice(class.as_bytes());
        }
        OwnedScores(buf.into_boxed_slice())
    }

    /// The size of the packed pairs on the heap.
    pub fn packed_len(&self) -> usize {
        self.0.len()
    }

    /// The (class, p) pairs in their original order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.raw_pairs()
            .map(|(k, p)| (std::str::from_utf8(k).expect("packed from a str"), p))
    }

    fn raw_pairs(&self) -> impl Iterator<Item = (&[u8], f64)> + '_ {
        let mut rest: &[u8] = &self.0;
        std::iter::from_fn(move || {
            let (p, tail) = rest.split_first_chunk::<8>()?;
            let (mut len, mut shift, mut at) = (0usize, 0, 0);
            loop {
                let b = tail[at];
                len |= usize::from(b & 0x7f) << shift;
                at += 1;
                if b < 0x80 {
                    break;
                }
                shift += 7;
            }
            let (class, next) = tail[at..].split_at(len);
            rest = next;
            Some((class, f64::from_le_bytes(*p)))
        })
    }

    /// The probability given to `class` (0 when absent; the last duplicate wins).
    pub fn probability_of(&self, class: &str) -> f64 {
        self.raw_pairs()
            .filter(|(k, _)| *k == class.as_bytes())
            .last()
            .map_or(0.0, |(_, p)| p)
    }
}

impl std::fmt::Debug for OwnedScores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl serde::Serialize for OwnedScores {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for OwnedScores {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs: Vec<(String, f64)> = serde::Deserialize::deserialize(d)?;
        Ok(OwnedScores::from_pairs(
            pairs.iter().map(|(k, p)| (k.as_str(), *p)),
        ))
    }
}

impl Scores<'_> {
    /// The probability given to `class`, 0 when the class has no score.
    pub fn probability_of(&self, class: &str, classes: Option<&[String]>) -> f64 {
        match self {
            Scores::Object(pairs) => pairs
                .iter()
                .rev()
                .find(|(k, _)| k == class)
                .map_or(0.0, |(_, p)| *p),
            Scores::Array(ps) => classes
                .and_then(|cs| cs.iter().position(|c| c == class))
                .and_then(|i| ps.get(i).copied())
                .unwrap_or(0.0),
        }
    }

    pub fn to_owned_scores(&self, classes: Option<&[String]>) -> OwnedScores {
        match self {
            Scores::Object(pairs) => {
                OwnedScores::from_pairs(pairs.iter().map(|(k, p)| (k.as_ref(), *p)))
            }
            Scores::Array(ps) => OwnedScores::from_pairs(
                classes
                    .unwrap_or(&[])
                    .iter()
                    .zip(ps)
                    .map(|(c, p)| (c.as_str(), *p)),
            ),
        }
    }
}

/// The probability an owned score list gives to `class` (0 when absent; last duplicate wins).
pub fn owned_probability_of(scores: &OwnedScores, class: &str) -> f64 {
    scores.probability_of(class)
}

/// One decoded, validated event. Strings borrow from the input line where possible.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub model: Cow<'a, str>,
    pub id: Option<Cow<'a, str>>,
    pub prediction: Option<Cow<'a, str>>,
    pub label: Option<Cow<'a, str>>,
    pub scores: Option<Scores<'a>>,
    /// Event time in nanoseconds since the Unix epoch, if the event carried one.
    pub timestamp_ns: Option<i64>,
    /// For a multi-label model (extension E7): the prediction's and the label's class
    /// sets, duplicates collapsed; `prediction` and `label` are then `None`. `None` for
    /// single-label models, so their events allocate nothing for it.
    pub sets: Option<Box<ClassSets<'a>>>,
    /// The segment the event's sample also counts in (extension E4), when
    /// `[fields] segment` is configured and the event carries one.
    pub segment: Option<Cow<'a, str>>,
}

/// The class sets of a multi-label event: `[prediction, label]`, each present or not.
pub type ClassSets<'a> = [Option<Vec<Cow<'a, str>>>; 2];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_scores_pack_and_serialize_as_pairs() {
        let long = "c".repeat(300); // a length over one LEB128 byte
        let pairs = [
            ("a", 0.25),
            (long.as_str(), 0.5),
            ("é", 0.125),
            ("a", 0.75),
            ("", 1.0),
        ];
        let s = OwnedScores::from_pairs(pairs);
        assert_eq!(s.iter().collect::<Vec<_>>(), pairs);
        assert_eq!(s.probability_of("a"), 0.75, "the last duplicate wins");
        assert_eq!(s.probability_of(&long), 0.5);
        assert_eq!(s.probability_of("é"), 0.125);
        assert_eq!(s.probability_of(""), 1.0);
        assert_eq!(s.probability_of("zzz"), 0.0);
        // The snapshot format of the boxed-pairs representation this replaced.
        let old: Box<[(Box<str>, f64)]> = pairs.iter().map(|(k, p)| (Box::from(*k), *p)).collect();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, serde_json::to_string(&old).unwrap());
        assert_eq!(serde_json::from_str::<OwnedScores>(&json).unwrap(), s);
        assert_eq!(OwnedScores::from_pairs([]).iter().count(), 0);
    }
}
