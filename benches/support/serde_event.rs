//! The borrowed struct the parse limits deserialize each event into (shared by
//! `benches/limits.rs` and `benches/kafka_bare.rs`), and the one count they keep.

use std::borrow::Cow;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};

use rustc_hash::FxBuildHasher;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

#[derive(Deserialize)]
#[allow(dead_code)] // the fields are parsed, which is the point, and mostly not read
pub struct Event<'a> {
    #[serde(borrow)]
    model: Option<Str<'a>>,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    prediction: Option<Str<'a>>,
    #[serde(borrow)]
    label: Option<Str<'a>>,
    #[serde(borrow)]
    scores: Option<Scores<'a>>,
    #[serde(borrow)]
    timestamp: Option<Str<'a>>,
}

/// A string borrowed from the line unless it has escapes (serde's own `Cow` support
/// does not borrow inside an `Option`).
#[derive(Hash)]
pub struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// `{"class": p, ...}` as a list of pairs.
#[allow(dead_code)] // parsed, not read
pub struct Scores<'a>(Vec<(Str<'a>, f64)>);

impl<'de: 'a, 'a> Deserialize<'de> for Scores<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scores<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of probabilities")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scores<'de>, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(Scores(pairs))
            }
        }
        d.deserialize_map(V)
    }
}

/// The hash-map key of a line: (model, prediction, label).
pub fn key(e: &Event<'_>) -> u64 {
    let mut h = FxBuildHasher.build_hasher();
    e.model.hash(&mut h);
    e.prediction.hash(&mut h);
    e.label.hash(&mut h);
    h.finish()
}
