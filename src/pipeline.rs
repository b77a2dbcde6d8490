//! decode -> join -> engine for one line at a time, with the event counters. `report`
//! and `run` both feed lines through a [`Pipeline`], so they cannot disagree.

use serde::{Deserialize, Serialize};

use crate::config::{Settings, WindowBy, WindowSpec};
use crate::engine::calibration::ScoreFacts;
use crate::engine::stats::log_loss_term;
use crate::engine::{Engine, EngineSettings, Sample};
use crate::event::{Decoder, Event, Rejection, Scores, Side};
use crate::join::{Join, Pending};

/// Counters of one source: every line read is either accepted or rejected once.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceCounters {
    pub name: String,
    pub read: u64,
    pub rejected: [u64; Rejection::ALL.len()],
}

impl SourceCounters {
    pub fn accepted(&self) -> u64 {
        self.read - self.rejected.iter().sum::<u64>()
    }
}

/// How the daemon differs from `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One pass over finite input: nothing expires, times are taken as given.
    Report,
    /// Live: pending halves expire, and timestamps ahead of the wall clock are taken as now.
    Daemon,
}

pub struct Pipeline {
    pub decoder: Decoder,
    pub join: Join,
    pub engine: Engine,
    pub sources: Vec<SourceCounters>,
    mode: Mode,
    window_by: WindowBy,
    max_pending: usize,
    ttl_ns: i64,
}

impl Pipeline {
    /// `windows` overrides `metrics.windows` (report's `--window`).
    pub fn new(
        settings: &Settings,
        mode: Mode,
        windows: Option<Vec<WindowSpec>>,
        sources: &[&str],
    ) -> Pipeline {
        let windows = windows.unwrap_or_else(|| settings.metrics.windows.clone());
        Pipeline {
            decoder: Decoder::new(settings),
            join: Join::default(),
            engine: Engine::new(EngineSettings::new(settings, windows)),
            sources: sources
                .iter()
                .map(|s| SourceCounters {
                    name: s.to_string(),
                    ..Default::default()
                })
                .collect(),
            mode,
            window_by: settings.metrics.window_by,
            max_pending: match mode {
                Mode::Report => usize::MAX,
                Mode::Daemon => settings.join.max_pending,
            },
            ttl_ns: settings.join.ttl.as_nanos().min(i64::MAX as u128) as i64,
        }
    }

    /// Counts a line rejected before decoding (a line over the size limit, cut by the reader).
    pub fn reject(&mut self, source: usize, why: Rejection) {
        let c = &mut self.sources[source];
        c.read += 1;
        c.rejected[why.index()] += 1;
    }

    /// Feeds one line (without its terminator). `now_ns` is the arrival time.
    pub fn ingest(&mut self, source: usize, line: &[u8], now_ns: i64) -> Result<(), Rejection> {
        let outcome = self
            .decoder
            .decode(line)
            .and_then(|e| self.apply(e, now_ns));
        self.sources[source].read += 1;
        if let Err(why) = outcome {
            self.sources[source].rejected[why.index()] += 1;
        }
        outcome
    }

    fn apply(&mut self, e: Event<'_>, now_ns: i64) -> Result<(), Rejection> {
        let mut time_ns = e.timestamp_ns.unwrap_or(now_ns);
        if self.mode == Mode::Daemon {
            time_ns = time_ns.min(now_ns);
        }
        let half_side = match (&e.prediction, &e.label) {
            (Some(_), Some(_)) => None,
            (Some(_), None) => Some(Side::Prediction),
            _ => Some(Side::Label),
        };
        // Only a half can be a duplicate: complete events skip the model lookup.
        if let Some(side) = half_side {
            if let Some(model) = self.engine.model_id(&e.model) {
                let id =
                    e.id.as_deref()
                        .expect("the decoder requires an id on halves");
                if self.join.pending_side(model, id) == Some(side) {
                    return Err(Rejection::DuplicateId);
                }
            }
        }
        let (model, [predicted, actual]) = self
            .engine
            .admit(&e.model, [e.prediction.as_deref(), e.label.as_deref()])?;
        let classes = self.decoder.classes_of(&e.model);
        let Some(side) = half_side else {
            let facts = e
                .scores
                .as_ref()
                .map(|s| borrowed_facts(&mut self.engine, model, actual, predicted, s, classes));
            self.engine.record(Sample {
                model,
                actual,
                predicted,
                time_ns,
                loss: facts.map(|f| log_loss_term(f.p_actual)),
                calibration: facts.map(|f| f.calibrated(actual == predicted)),
                positive: facts.and_then(|f| f.positive),
            });
            return Ok(());
        };
        let id =
            e.id.as_deref()
                .expect("the decoder requires an id on halves");
        let Some(other) = self.join.take(model, id) else {
            let class = if side == Side::Prediction {
                predicted
            } else {
                actual
            };
            let mut half = Pending::new(
                model,
                id,
                side,
                class,
                time_ns,
                now_ns,
                e.scores.as_ref().map(|s| s.to_owned_scores(classes)),
            );
            if let (Side::Prediction, Some(scores)) = (side, &e.scores) {
                // The borrowed scores are the held ones, and cheaper to read.
                half.estimate = match scores {
                    Scores::Object(pairs) => self.engine.hold_estimate(
                        model,
                        class,
                        time_ns,
                        pairs.iter().map(|(k, p)| (k.as_ref(), *p)),
                    ),
                    Scores::Array(ps) => self.engine.hold_estimate(
                        model,
                        class,
                        time_ns,
                        classes
                            .unwrap_or(&[])
                            .iter()
                            .map(String::as_str)
                            .zip(ps.iter().copied()),
                    ),
                };
            }
            self.join.hold(half);
            if self.join.len() > self.max_pending {
                self.expire_oldest();
            }
            return Ok(());
        };
        if let (Side::Prediction, Some(scores)) = (other.side, &other.scores) {
            self.engine.release_estimate(
                model,
                other.class,
                other.time_ns,
                other.estimate,
                scores.iter(),
            );
        }
        let (pred_class, pred_ns, label_class, label_ns) = match side {
            Side::Prediction => (predicted, time_ns, other.class, other.time_ns),
            Side::Label => (other.class, other.time_ns, actual, time_ns),
        };
        // The prediction's scores first, the label's if only it carried some.
        let (a, p) = (label_class, pred_class);
        let arriving_first = match side {
            Side::Prediction => e.scores.is_some(),
            Side::Label => other.scores.is_none(),
        };
        let facts = match (&e.scores, &other.scores) {
            (Some(s), _) if arriving_first => {
                Some(borrowed_facts(&mut self.engine, model, a, p, s, classes))
            }
            (_, Some(s)) => Some(self.engine.score_facts(model, a, p, s.iter())),
            _ => None,
        };
        let time_ns = match self.window_by {
            WindowBy::Completion => pred_ns.max(label_ns),
            WindowBy::Prediction => pred_ns,
        };
        self.engine
            .observe_label_delay(model, (label_ns - pred_ns) as f64 / 1e9);
        self.engine.record(Sample {
            model,
            actual: label_class,
            predicted: pred_class,
            time_ns,
            loss: facts.map(|f| log_loss_term(f.p_actual)),
            calibration: facts.map(|f| f.calibrated(a == p)),
            positive: facts.and_then(|f| f.positive),
        });
        Ok(())
    }

    fn expire_oldest(&mut self) {
        if let Some(old) = self.join.pop_oldest() {
            self.engine.count_expired(old.model, old.side);
        }
    }

    /// Daemon housekeeping: expires halves older than the TTL and moves the watermark
    /// with the wall clock.
    pub fn tick(&mut self, now_ns: i64) {
        let cutoff = now_ns.saturating_sub(self.ttl_ns);
        while self.join.oldest_arrival_ns().is_some_and(|t| t < cutoff) {
            self.expire_oldest();
        }
        self.engine.advance_watermark(now_ns);
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// [`Engine::score_facts`] of scores still borrowed from the line.
fn borrowed_facts(
    engine: &mut Engine,
    model: u32,
    actual: u32,
    predicted: u32,
    scores: &Scores<'_>,
    classes: Option<&[String]>,
) -> ScoreFacts {
    match scores {
        Scores::Object(pairs) => engine.score_facts(
            model,
            actual,
            predicted,
            pairs.iter().map(|(k, p)| (k.as_ref(), *p)),
        ),
        Scores::Array(ps) => engine.score_facts(
            model,
            actual,
            predicted,
            classes
                .unwrap_or(&[])
                .iter()
                .map(String::as_str)
                .zip(ps.iter().copied()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn daemon(edit: impl FnOnce(&mut RawConfig)) -> Pipeline {
        let mut raw = RawConfig::default();
        edit(&mut raw);
        Pipeline::new(
            &Settings::from_raw(raw).unwrap(),
            Mode::Daemon,
            None,
            &["t"],
        )
    }

    const SECOND: i64 = 1_000_000_000;

    #[test]
    fn halves_expire_after_the_ttl_and_are_counted_by_side() {
        let mut p = daemon(|r| r.join.ttl = "10s".into());
        let t0 = 1_700_000_000 * SECOND;
        p.ingest(0, br#"{"model":"m","id":1,"prediction":"a"}"#, t0)
            .unwrap();
        p.ingest(0, br#"{"model":"m","id":2,"label":"a"}"#, t0 + 5 * SECOND)
            .unwrap();
        p.tick(t0 + 10 * SECOND);
        assert_eq!(p.join.len(), 2, "not older than the ttl yet");
        p.tick(t0 + 10 * SECOND + 1);
        assert_eq!((p.join.len(), p.engine.model(0).join_expired), (1, [1, 0]));
        p.tick(t0 + 16 * SECOND);
        assert_eq!((p.join.len(), p.engine.model(0).join_expired), (0, [1, 1]));
        // An expired half never becomes a sample: its late partner waits on its own.
        p.ingest(0, br#"{"model":"m","id":1,"label":"a"}"#, t0 + 17 * SECOND)
            .unwrap();
        assert_eq!(
            (p.engine.model(0).samples(), p.join.pending_of(0)),
            (0, [0, 1])
        );
    }

    #[test]
    fn beyond_max_pending_the_oldest_half_expires_first() {
        let mut p = daemon(|r| r.join.max_pending = 3);
        let t0 = 1_700_000_000 * SECOND;
        for id in 0..5 {
            let line = format!(r#"{{"model":"m","id":{id},"prediction":"a"}}"#);
            p.ingest(0, line.as_bytes(), t0 + id).unwrap();
        }
        assert_eq!((p.join.len(), p.engine.model(0).join_expired), (3, [2, 0]));
        // Ids 0 and 1 expired; 2..4 still join.
        p.ingest(0, br#"{"model":"m","id":2,"label":"a"}"#, t0 + 10)
            .unwrap();
        p.ingest(0, br#"{"model":"m","id":0,"label":"a"}"#, t0 + 10)
            .unwrap();
        assert_eq!(p.engine.model(0).samples(), 1);
        assert_eq!(
            p.join.pending_of(0),
            [2, 1],
            "id 0's label waits: its prediction expired"
        );
    }

    #[test]
    fn report_mode_never_expires() {
        let mut p = Pipeline::new(&Settings::default(), Mode::Report, None, &["t"]);
        p.ingest(0, br#"{"id":1,"prediction":"a","timestamp":0}"#, 0)
            .unwrap();
        p.ingest(0, br#"{"id":1,"label":"a","timestamp":100000}"#, 0)
            .unwrap();
        assert_eq!(p.engine.model(0).samples(), 1);
    }

    #[test]
    fn daemon_takes_future_timestamps_as_now() {
        let mut p = daemon(|_| {});
        let now = 1_700_000_000 * SECOND;
        p.ingest(
            0,
            br#"{"prediction":"a","label":"a","timestamp":1800000000}"#,
            now,
        )
        .unwrap();
        assert_eq!(p.engine.watermark_ns(), Some(now));
    }
}
