//! Time windows (contract Section 3): a ring of epoch-aligned buckets spanning the
//! longest window, plus running sums per window. A sample costs O(windows); moving
//! the head subtracts only the buckets that leave each window, O(their non-zero cells).
//!
//! Beside the confusion counts, each bucket holds the expected cells of unlabelled
//! predictions placed in it (see [`super::estimate`]); they enter and leave the window
//! sums the same way, and a joined label takes its prediction's estimate back out.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::calibration::{Calibrated, Calibration};
use super::counts::{Dense, FloatDense, Sum};
use super::drift::{BucketPredictions, Predictions};
use super::ranking::{ScoreHistogram, SparseHistogram};

/// Per-bucket scalars besides the confusion cells.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct BucketStats {
    pub samples: u64,
    pub scored: u64,
    pub loss: Sum,
}

impl BucketStats {
    fn add(&mut self, loss: Option<f64>) {
        self.samples += 1;
        if let Some(l) = loss {
            self.scored += 1;
            self.loss.add(l);
        }
    }
}

/// The expected cells of the unlabelled predictions placed in one closed bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct BucketEstimate {
    /// (actual, predicted, expected count), sorted by (predicted, actual).
    cells: Vec<(u16, u16, f64)>,
    /// Predictions whose estimate sits in this bucket.
    count: u64,
}

impl BucketEstimate {
    fn is_empty(&self) -> bool {
        self.count == 0 && self.cells.is_empty()
    }

    fn add(&mut self, predicted: u32, column: &[(u32, f64)], sign: f64) {
        for &(a, v) in column {
            let key = (predicted as u16, a as u16);
            match self.cells.binary_search_by_key(&key, |c| (c.1, c.0)) {
                Ok(i) => self.cells[i].2 += sign * v,
                Err(i) => self.cells.insert(i, (a as u16, predicted as u16, sign * v)),
            }
        }
        if sign > 0.0 {
            self.count += 1;
        } else {
            self.count = self.count.saturating_sub(1);
        }
    }
}

/// A bucket older than the head, stored sparsely: (actual, predicted, count).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ClosedBucket {
    index: i64,
    cells: Vec<(u16, u16, u32)>,
    stats: BucketStats,
    #[serde(default, skip_serializing_if = "BucketEstimate::is_empty")]
    estimate: BucketEstimate,
    /// Calibration sums of the bucket's samples with scores (extension E2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    calibration: Option<Box<Calibration>>,
    /// Score histogram of the positive class (extension E3).
    #[serde(default, skip_serializing_if = "SparseHistogram::is_empty")]
    ranking: SparseHistogram,
    /// (tp, fp, fn) at each extra threshold (extension E6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    thresholds: Vec<[u32; 3]>,
    /// Predictions counted on arrival, labelled or not (extension E5).
    #[serde(default, skip_serializing_if = "BucketPredictions::is_empty")]
    drift: BucketPredictions,
}

impl ClosedBucket {
    fn add(&mut self, actual: u32, predicted: u32, loss: Option<f64>) {
        let (a, p) = (actual as u16, predicted as u16);
        match self.cells.iter_mut().find(|c| c.0 == a && c.1 == p) {
            Some(c) => c.2 += 1,
            None => self.cells.push((a, p, 1)),
        }
        self.stats.add(loss);
    }
}

/// The running totals of one window length.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowSums {
    /// Length in buckets.
    pub buckets: u32,
    pub cells: Dense,
    pub samples: u64,
    /// Expected cells of the unlabelled predictions placed in the window's buckets.
    #[serde(default)]
    pub estimate: FloatDense,
    /// How many unlabelled predictions `estimate` holds.
    #[serde(default)]
    pub estimated: u64,
    /// Positive-class score histogram of the window's samples (extension E3).
    #[serde(default)]
    pub ranking: ScoreHistogram,
    /// (tp, fp, fn) at each extra threshold (extension E6).
    #[serde(default)]
    pub thresholds: Vec<[u64; 3]>,
    /// Predictions placed in the window's buckets (extension E5).
    #[serde(default)]
    pub drift: Predictions,
}

/// Where a recorded sample landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Inside the ring (and so in every window whose range covers its bucket).
    InRing,
    /// Older than the oldest bucket of the longest window: counted in `all` only.
    Late,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ring {
    /// Buckets of the longest window; 0 when only `all` is configured.
    span: u32,
    /// Index (time / bucket width) of the newest bucket, once any sample or clock moved it.
    head: Option<i64>,
    head_cells: Dense,
    head_touched: Vec<u32>,
    head_stats: BucketStats,
    #[serde(default)]
    head_estimate: FloatDense,
    #[serde(default)]
    head_estimate_touched: Vec<u32>,
    #[serde(default)]
    head_estimated: u64,
    #[serde(default)]
    head_calibration: Calibration,
    #[serde(default)]
    head_ranking: SparseHistogram,
    #[serde(default)]
    head_thresholds: Vec<[u32; 3]>,
    #[serde(default)]
    head_drift: Predictions,
    /// Non-empty buckets older than the head and inside the span, oldest first.
    closed: VecDeque<ClosedBucket>,
    /// Where in `closed` the last bucket looked up was: consecutive events mostly fall
    /// in the same bucket, and a binary search over a `VecDeque` for each of them was 4%
    /// of the engine's time. Only a guess, checked before use.
    #[serde(skip)]
    closed_hint: usize,
    pub windows: Vec<WindowSums>,
}

impl Ring {
    /// `lengths`: each window's length in buckets.
    pub fn new(lengths: &[u32], stride: usize) -> Ring {
        Ring {
            span: lengths.iter().copied().max().unwrap_or(0),
            head: None,
            head_cells: Dense::with_stride(stride),
            head_touched: Vec::new(),
            head_stats: BucketStats::default(),
            head_estimate: FloatDense::with_stride(stride),
            head_estimate_touched: Vec::new(),
            head_estimated: 0,
            head_calibration: Calibration::default(),
            head_ranking: SparseHistogram::default(),
            head_thresholds: Vec::new(),
            head_drift: Predictions::default(),
            closed: VecDeque::new(),
            closed_hint: 0,
            windows: lengths
                .iter()
                .map(|&buckets| WindowSums {
                    buckets,
                    cells: Dense::with_stride(stride),
                    samples: 0,
                    estimate: FloatDense::with_stride(stride),
                    estimated: 0,
                    ranking: ScoreHistogram::default(),
                    thresholds: Vec::new(),
                    drift: Predictions::default(),
                })
                .collect(),
        }
    }

    /// Lays out the estimate matrices of a ring restored from a snapshot written before
    /// they existed (format version 1 without estimates).
    pub fn ensure_layout(&mut self) {
        let stride = self.head_cells.stride();
        self.head_estimate.ensure(stride);
        for w in &mut self.windows {
            w.estimate.ensure(stride);
        }
    }

    pub fn grow(&mut self, stride: usize) {
        if stride <= self.head_cells.stride() {
            return;
        }
        // Touched offsets are flat indices under the old stride: translate them.
        let old: Vec<(u32, u32)> = self
            .head_touched
            .iter()
            .map(|&o| self.head_cells.cell_of(o as usize))
            .collect();
        self.head_cells.grow(stride);
        self.head_touched = old
            .iter()
            .map(|&(a, p)| self.head_cells.offset(a, p) as u32)
            .collect();
        let old: Vec<(u32, u32)> = self
            .head_estimate_touched
            .iter()
            .map(|&o| self.head_estimate.cell_of(o as usize))
            .collect();
        self.head_estimate.grow(stride);
        self.head_estimate_touched = old
            .iter()
            .map(|&(a, p)| self.head_estimate.offset(a, p) as u32)
            .collect();
        for w in &mut self.windows {
            w.cells.grow(stride);
            w.estimate.grow(stride);
        }
    }

    /// Buckets of the longest window (0 when only `all` is configured).
    pub fn span(&self) -> u32 {
        self.span
    }

    pub fn head(&self) -> Option<i64> {
        self.head
    }

    /// Adds one sample whose time falls in bucket `bucket`; moves the head forward if needed.
    pub fn record(
        &mut self,
        bucket: i64,
        actual: u32,
        predicted: u32,
        loss: Option<f64>,
    ) -> Placement {
        if self.span == 0 {
            return Placement::InRing;
        }
        let head = match self.head {
            Some(h) if bucket <= h => h,
            _ => {
                self.advance_to(bucket);
                bucket
            }
        };
        let age = head - bucket;
        if age >= self.span as i64 {
            return Placement::Late;
        }
        if age == 0 {
            let offset = self.head_cells.offset(actual, predicted);
            if self.head_cells.get(actual as usize, predicted as usize) == 0 {
                self.head_touched.push(offset as u32);
            }
            self.head_cells.add(actual, predicted, 1);
            self.head_stats.add(loss);
        } else {
            self.closed_mut(bucket).add(actual, predicted, loss);
        }
        for w in &mut self.windows {
            if age < w.buckets as i64 {
                w.cells.add(actual, predicted, 1);
                w.samples += 1;
            }
        }
        Placement::InRing
    }

    /// Moves the head to `bucket` (never backwards): closes the old head and subtracts
    /// from each window the buckets that fall out of it.
    pub fn advance_to(&mut self, bucket: i64) {
        let Some(old_head) = self.head else {
            self.head = Some(bucket);
            return;
        };
        if bucket <= old_head || self.span == 0 {
            self.head = Some(bucket.max(old_head));
            return;
        }
        self.close_head(old_head);
        for w in &mut self.windows {
            let old_start = old_head - w.buckets as i64 + 1;
            let new_start = bucket - w.buckets as i64 + 1;
            let first = self.closed.partition_point(|b| b.index < old_start);
            for b in self
                .closed
                .iter()
                .skip(first)
                .take_while(|b| b.index < new_start)
            {
                for &(a, p, n) in &b.cells {
                    w.cells.sub(a as u32, p as u32, n as u64);
                }
                w.samples -= b.stats.samples;
                for &(a, p, v) in &b.estimate.cells {
                    w.estimate.add(a as u32, p as u32, -v);
                }
                w.estimated = w.estimated.saturating_sub(b.estimate.count);
                for &(bin, pos, neg) in &b.ranking.0 {
                    w.ranking.sub(bin, true, pos as u64);
                    w.ranking.sub(bin, false, neg as u64);
                }
                for (w, b) in w.thresholds.iter_mut().zip(&b.thresholds) {
                    for i in 0..3 {
                        w[i] -= b[i] as u64;
                    }
                }
                w.drift.sub(&b.drift);
            }
        }
        let oldest_kept = bucket - self.span as i64 + 1;
        while self.closed.front().is_some_and(|b| b.index < oldest_kept) {
            self.closed.pop_front();
        }
        self.head = Some(bucket);
    }

    fn close_head(&mut self, index: i64) {
        // The head's estimate cells are always drained, so no residue of a released
        // estimate is carried into the next head bucket.
        let mut estimate = BucketEstimate {
            cells: Vec::with_capacity(self.head_estimate_touched.len()),
            count: std::mem::take(&mut self.head_estimated),
        };
        for &offset in &self.head_estimate_touched {
            let (a, p) = self.head_estimate.cell_of(offset as usize);
            let v = self.head_estimate.take(offset as usize);
            if v != 0.0 {
                estimate.cells.push((a as u16, p as u16, v));
            }
        }
        self.head_estimate_touched.clear();
        estimate.cells.sort_by_key(|c| (c.1, c.0));
        if self.head_stats.samples == 0 && estimate.count == 0 && self.head_drift.count == 0 {
            return;
        }
        let mut cells = Vec::with_capacity(self.head_touched.len());
        for &offset in &self.head_touched {
            let (a, p) = self.head_cells.cell_of(offset as usize);
            let n = self.head_cells.take(offset as usize);
            cells.push((a as u16, p as u16, n as u32));
        }
        self.head_touched.clear();
        let stats = std::mem::take(&mut self.head_stats);
        let calibration = std::mem::take(&mut self.head_calibration);
        // The head is always newer than every closed bucket.
        self.closed.push_back(ClosedBucket {
            index,
            cells,
            stats,
            estimate,
            calibration: (calibration.samples > 0).then(|| Box::new(calibration)),
            ranking: std::mem::take(&mut self.head_ranking),
            thresholds: std::mem::take(&mut self.head_thresholds),
            drift: self.head_drift.take_sparse(),
        });
    }

    /// `Ok(position)` of the closed bucket `index` in `closed`, else `Err(position)`
    /// where it would go (the ring is sorted by index).
    fn closed_position(&mut self, index: i64) -> Result<usize, usize> {
        let hint = self.closed_hint;
        if self.closed.get(hint).is_some_and(|b| b.index == index) {
            return Ok(hint);
        }
        let at = self.closed.partition_point(|b| b.index < index);
        if self.closed.get(at).is_some_and(|b| b.index == index) {
            self.closed_hint = at;
            Ok(at)
        } else {
            Err(at)
        }
    }

    /// The closed bucket `index`, if it holds anything.
    fn closed_get_mut(&mut self, index: i64) -> Option<&mut ClosedBucket> {
        let at = self.closed_position(index).ok()?;
        Some(&mut self.closed[at])
    }

    /// The closed bucket `index`, inserted empty in its place when it held nothing yet.
    fn closed_mut(&mut self, index: i64) -> &mut ClosedBucket {
        let at = match self.closed_position(index) {
            Ok(at) => at,
            Err(at) => {
                self.closed.insert(
                    at,
                    ClosedBucket {
                        index,
                        ..Default::default()
                    },
                );
                self.closed_hint = at;
                at
            }
        };
        &mut self.closed[at]
    }

    /// Where the estimate of a prediction in bucket `bucket` goes: that bucket, or the
    /// head when the prediction is newer than the watermark (a half does not move the
    /// watermark). `None` when it falls outside the ring: it then counts in `all` only.
    pub fn estimate_placement(&self, bucket: i64) -> Option<i64> {
        let head = self.head?;
        let placed = bucket.min(head);
        (self.span > 0 && head - placed < self.span as i64).then_some(placed)
    }

    /// Adds (`sign` 1) or takes back (`sign` -1) the expected cells `column` of one
    /// prediction of class `predicted`, placed in bucket `placed` (from
    /// [`Ring::estimate_placement`], still inside the ring).
    pub fn add_estimate(&mut self, placed: i64, predicted: u32, column: &[(u32, f64)], sign: f64) {
        let Some(head) = self.head else { return };
        let age = head - placed;
        if age < 0 || age >= self.span as i64 {
            return;
        }
        if age == 0 {
            for &(a, v) in column {
                let offset = self.head_estimate.offset(a, predicted);
                if self.head_estimate.add(a, predicted, sign * v) {
                    self.head_estimate_touched.push(offset as u32);
                }
            }
            if sign > 0.0 {
                self.head_estimated += 1;
            } else {
                self.head_estimated = self.head_estimated.saturating_sub(1);
            }
        } else {
            self.closed_mut(placed)
                .estimate
                .add(predicted, column, sign);
        }
        for w in &mut self.windows {
            if age < w.buckets as i64 {
                for &(a, v) in column {
                    w.estimate.add(a, predicted, sign * v);
                }
                if sign > 0.0 {
                    w.estimated += 1;
                } else {
                    w.estimated = w.estimated.saturating_sub(1);
                }
            }
        }
    }

    /// Adds the calibration terms of a sample that [`Ring::record`] placed in the ring.
    pub fn record_calibration(&mut self, bucket: i64, c: &Calibrated) {
        let Some(head) = self.head.filter(|_| self.span > 0) else {
            return;
        };
        if bucket == head {
            self.head_calibration.add(c);
        } else {
            if let Some(b) = self.closed_get_mut(bucket) {
                b.calibration.get_or_insert_with(Default::default).add(c);
            }
        }
    }

    /// Adds the positive-class score bin of a sample that [`Ring::record`] placed in
    /// the ring, to its bucket and the windows that hold it.
    /// `hits` are the sample's (tp, fp, fn) indicators at each extra threshold.
    pub fn record_ranking(&mut self, bucket: i64, bin: u16, positive: bool, hits: &[[bool; 3]]) {
        let Some(head) = self.head.filter(|_| self.span > 0) else {
            return;
        };
        let age = head - bucket;
        if age == 0 {
            self.head_ranking.add(bin, positive);
            super::thresholds::add(&mut self.head_thresholds, hits, 1);
        } else {
            match self.closed_get_mut(bucket) {
                Some(b) => {
                    b.ranking.add(bin, positive);
                    super::thresholds::add(&mut b.thresholds, hits, 1);
                }
                None => return,
            }
        }
        for w in &mut self.windows {
            if age < w.buckets as i64 {
                w.ranking.add(bin, positive, 1);
                super::thresholds::add(&mut w.thresholds, hits, 1);
            }
        }
    }

    /// Counts a prediction of `class` (score bin `bin`) whose time falls in bucket
    /// `bucket`: in that bucket, or the head when it is newer (a prediction does not move
    /// the head); nowhere when it is older than the ring. Returns whether it was placed.
    pub fn record_prediction(&mut self, bucket: i64, class: u32, bin: Option<u8>) -> bool {
        let Some(placed) = self.estimate_placement(bucket) else {
            return false;
        };
        let head = self.head.expect("placed in the ring");
        let age = head - placed;
        if age == 0 {
            self.head_drift.add(class, bin);
        } else {
            self.closed_mut(placed).drift.add(class, bin);
        }
        for w in &mut self.windows {
            if age < w.buckets as i64 {
                w.drift.add(class, bin);
            }
        }
        true
    }

    /// Forgets every count made at extra thresholds (they changed in the configuration).
    pub fn clear_thresholds(&mut self) {
        self.head_thresholds.clear();
        for b in &mut self.closed {
            b.thresholds.clear();
        }
        for w in &mut self.windows {
            w.thresholds.clear();
        }
    }

    /// The calibration sums of window `w`, added up over its buckets.
    pub fn window_calibration(&self, w: usize) -> Calibration {
        let mut out = Calibration::default();
        let Some(head) = self.head else { return out };
        let start = head - self.windows[w].buckets as i64 + 1;
        out.add_all(&self.head_calibration);
        let first = self.closed.partition_point(|b| b.index < start);
        for b in self.closed.iter().skip(first) {
            if let Some(c) = &b.calibration {
                out.add_all(c);
            }
        }
        out
    }

    /// Scalars of window `w` (sample count, scored count, loss sum), summed over its buckets.
    pub fn window_stats(&self, w: usize) -> BucketStats {
        let mut out = BucketStats {
            samples: self.windows[w].samples,
            ..Default::default()
        };
        let Some(head) = self.head else { return out };
        let start = head - self.windows[w].buckets as i64 + 1;
        out.scored += self.head_stats.scored;
        out.loss.add_sum(&self.head_stats.loss);
        let first = self.closed.partition_point(|b| b.index < start);
        for b in self.closed.iter().skip(first) {
            out.scored += b.stats.scored;
            out.loss.add_sum(&b.stats.loss);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recomputes a window from scratch: the reference the running sums must equal.
    fn brute(samples: &[(i64, u32, u32)], head: i64, len: u32) -> (Vec<(u32, u32, u64)>, u64) {
        let mut d = Dense::with_stride(4);
        let mut n = 0;
        for &(b, a, p) in samples {
            if b <= head && b > head - len as i64 {
                d.add(a, p, 1);
                n += 1;
            }
        }
        (d.nonzero().collect(), n)
    }

    #[test]
    fn running_sums_equal_recomputation_with_late_and_jumps() {
        let mut ring = Ring::new(&[1, 3, 6], 4);
        let mut seen = Vec::new();
        // (bucket, actual, predicted), including out-of-order, late and far jumps.
        let stream = [
            (10, 0, 0),
            (10, 1, 0),
            (11, 1, 1),
            (9, 0, 1),
            (13, 2, 2),
            (12, 0, 0),
            (8, 1, 1),
            (20, 3, 0),
            (15, 1, 2),
            (14, 0, 0),
            (21, 0, 0),
            (21, 1, 1),
            (40, 2, 2),
            (39, 2, 1),
        ];
        for &(b, a, p) in &stream {
            let placement = ring.record(b, a, p, None);
            let head = ring.head().unwrap();
            if placement == Placement::InRing {
                seen.push((b, a, p));
            } else {
                assert!(head - b >= 6, "only samples older than the span are late");
            }
            for (w, len) in [1u32, 3, 6].iter().enumerate() {
                let (cells, n) = brute(&seen, head, *len);
                assert_eq!(
                    ring.windows[w].cells.nonzero().collect::<Vec<_>>(),
                    cells,
                    "window {len} after {b}"
                );
                assert_eq!(ring.windows[w].samples, n);
            }
        }
    }

    /// Long runs into the same closed buckets, with inserts before them and buckets
    /// dropping off the front (which move the looked-up bucket's position under
    /// `closed_hint`): the windows still equal a recomputation.
    #[test]
    fn repeated_closed_buckets_equal_recomputation() {
        let mut ring = Ring::new(&[2, 5], 3);
        let mut seen = Vec::new();
        let mut x: u64 = 7;
        let (mut head, mut back) = (100i64, 0i64);
        for i in 0..3_000u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            if i % 97 == 0 {
                head += 1 + (x >> 60) as i64 % 3;
            }
            // Runs of 8 samples into one bucket, most of them closed (up to 6 back).
            if i % 8 == 0 {
                back = ((x >> 33) % 7) as i64;
            }
            let b = head - back;
            let (a, p) = ((x >> 20) % 3, (x >> 40) % 3);
            if ring.record(b, a as u32, p as u32, None) == Placement::InRing {
                seen.push((b, a as u32, p as u32));
            }
            let now = ring.head().unwrap();
            for (w, len) in [2u32, 5].iter().enumerate() {
                let (cells, n) = brute(&seen, now, *len);
                assert_eq!(ring.windows[w].cells.nonzero().collect::<Vec<_>>(), cells);
                assert_eq!(ring.windows[w].samples, n, "window {len} at sample {i}");
            }
        }
    }

    /// Estimates held and released in any order, with the head moving in between: every
    /// window's expected cells and count equal a recomputation from the live holds.
    #[test]
    fn estimates_in_windows_equal_recomputation() {
        let mut ring = Ring::new(&[1, 3, 6], 3);
        // (placed bucket, predicted, column) of the live holds
        type Hold = (i64, u32, Vec<(u32, f64)>);
        let mut live: Vec<Hold> = Vec::new();
        let mut x = 12345u64;
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        for step in 0..400 {
            match next(4) {
                0 => {
                    let b = 100 + step / 10 + next(3) as i64 - 1;
                    ring.record(b, next(3) as u32, next(3) as u32, None);
                }
                1 | 2 => {
                    let b = 100 + step / 10 - next(8) as i64 + 1;
                    if let Some(placed) = ring.estimate_placement(b) {
                        let p = next(3) as u32;
                        let q = 0.1 + next(8) as f64 / 10.0;
                        let column = vec![(p, q), ((p + 1) % 3, 1.0 - q)];
                        ring.add_estimate(placed, p, &column, 1.0);
                        live.push((placed, p, column));
                    }
                }
                _ if !live.is_empty() => {
                    let (placed, p, column) = live.swap_remove(next(live.len() as u64) as usize);
                    ring.add_estimate(placed, p, &column, -1.0);
                }
                _ => {}
            }
            let head = ring.head().unwrap_or(0);
            for w in &ring.windows {
                let inside: Vec<_> = live
                    .iter()
                    .filter(|(b, _, _)| head - b < w.buckets as i64 && *b <= head)
                    .collect();
                assert_eq!(w.estimated, inside.len() as u64, "step {step}");
                let mut brute = FloatDense::with_stride(3);
                for (_, p, column) in &inside {
                    for &(a, v) in column {
                        brute.add(a, *p, v);
                    }
                }
                for a in 0..3 {
                    for p in 0..3 {
                        assert!((w.estimate.get(a, p) - brute.get(a, p)).abs() < 1e-12);
                    }
                }
            }
        }
    }

    /// Score histograms of the windows equal a recomputation from the samples inside.
    #[test]
    fn ranking_histograms_in_windows_equal_recomputation() {
        let mut ring = Ring::new(&[1, 3, 6], 2);
        let mut seen: Vec<(i64, u16, bool)> = Vec::new();
        for (i, b) in [10i64, 10, 11, 9, 13, 12, 20, 15, 21, 21, 40, 39, 38]
            .into_iter()
            .enumerate()
        {
            let (bin, positive) = ((i * 37 % 11) as u16, i % 3 == 0);
            if ring.record(b, 0, 0, None) == Placement::InRing {
                ring.record_ranking(b, bin, positive, &[[positive, !positive, false]]);
                seen.push((b, bin, positive));
            }
            let head = ring.head().unwrap();
            for w in &ring.windows {
                let mut brute = ScoreHistogram::default();
                for &(sb, bin, positive) in &seen {
                    if head - sb < w.buckets as i64 {
                        brute.add(bin, positive, 1);
                    }
                }
                let got: Vec<_> = w.ranking.bins().collect();
                assert_eq!(got, brute.bins().collect::<Vec<_>>(), "after {b}");
                let (pos, neg) = brute.bins().fold((0, 0), |(p, n), b| (p + b.1, n + b.2));
                let counts = w.thresholds.first().copied().unwrap_or_default();
                assert_eq!(counts, [pos, neg, 0], "thresholds after {b}");
            }
        }
    }

    /// Prediction counts of the windows equal a recomputation from the placed
    /// predictions: newer than the head go to the head, older than the ring nowhere.
    #[test]
    fn prediction_counts_in_windows_equal_recomputation() {
        let mut ring = Ring::new(&[1, 3, 6], 2);
        let mut placed: Vec<(i64, u32, Option<u8>)> = Vec::new();
        let stream = [
            (10, true, 0),
            (12, false, 1),
            (11, false, 2),
            (13, true, 1),
            (3, false, 0),
            (20, true, 2),
            (16, false, 1),
            (14, false, 0),
            (40, true, 1),
            (45, false, 2),
            (39, false, 0),
        ];
        for (i, &(b, sample, class)) in stream.iter().enumerate() {
            if sample {
                ring.record(b, 0, 0, None);
            }
            let bin = (i % 3 != 0).then_some((i % 10) as u8);
            let at = ring.head().map(|h| b.min(h));
            if ring.record_prediction(b, class, bin) {
                placed.push((at.unwrap(), class, bin));
            } else {
                assert!(at.is_none_or(|p| ring.head().unwrap() - p >= 6), "{b}");
            }
            let head = ring.head().unwrap_or(0);
            for w in &ring.windows {
                let mut brute = Predictions::default();
                for &(p, c, bin) in &placed {
                    if head - p < w.buckets as i64 {
                        brute.add(c, bin);
                    }
                }
                assert_eq!(w.drift.count, brute.count, "after {b}");
                assert_eq!(w.drift.scores, brute.scores, "after {b}");
                for c in 0..3 {
                    let get = |v: &Vec<u64>| v.get(c).copied().unwrap_or(0);
                    assert_eq!(get(&w.drift.classes), get(&brute.classes), "after {b}");
                }
            }
        }
    }

    #[test]
    fn loss_is_summed_over_the_window_buckets() {
        let mut ring = Ring::new(&[2], 2);
        ring.record(5, 0, 0, Some(1.0));
        ring.record(6, 0, 0, Some(2.0));
        ring.record(6, 1, 0, None);
        let s = ring.window_stats(0);
        assert_eq!((s.samples, s.scored, s.loss.value()), (3, 2, 3.0));
        ring.advance_to(7);
        let s = ring.window_stats(0);
        assert_eq!((s.samples, s.scored, s.loss.value()), (2, 1, 2.0));
    }

    #[test]
    fn growing_the_stride_keeps_head_and_windows() {
        let mut ring = Ring::new(&[2], 2);
        ring.record(1, 1, 0, None);
        ring.grow(3);
        ring.record(1, 2, 1, None);
        ring.advance_to(2);
        assert_eq!(
            ring.windows[0].cells.nonzero().collect::<Vec<_>>(),
            [(1, 0, 1), (2, 1, 1)]
        );
        ring.advance_to(3);
        assert_eq!(ring.windows[0].samples, 0);
    }
}
