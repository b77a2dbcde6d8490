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
}

impl Rejection {
    pub const ALL: [Rejection; 13] = [
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

/// Scores held by a pending half: owned, compact.
pub type OwnedScores = Box<[(Box<str>, f64)]>;

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
            Scores::Object(pairs) => pairs
                .iter()
                .map(|(k, p)| (Box::from(k.as_ref()), *p))
                .collect(),
            Scores::Array(ps) => classes
                .unwrap_or(&[])
                .iter()
                .zip(ps)
                .map(|(c, p)| (Box::from(c.as_str()), *p))
                .collect(),
        }
    }
}

/// The probability an owned score list gives to `class` (0 when absent; last duplicate wins).
pub fn owned_probability_of(scores: &OwnedScores, class: &str) -> f64 {
    scores
        .iter()
        .rev()
        .find(|(k, _)| k.as_ref() == class)
        .map_or(0.0, |(_, p)| *p)
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
}
