//! Event time: a source's declared time column and its watermark, late rows, the panes and
//! windows a time falls in, intervals in milliseconds, and durations as the plan shows them.

use datafusion::arrow::array::BooleanArray;
use datafusion::common::ScalarValue;

/// Milliseconds since the Unix epoch, UTC: the unit of every event-time column.
pub type Millis = i64;

/// The watermark of a source that has ended: every open window closes.
pub const END_OF_TIME: Millis = Millis::MAX;

const DAY: Millis = 86_400_000;

/// The declared event-time column of a source and its watermark bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTime {
    pub column: String,
    pub index: usize,
    pub bound: Millis,
}

/// The wall clock, in milliseconds since the epoch.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// The length of an interval value in milliseconds; `None` for a value that is not an interval
/// or that counts months or years (they have no fixed length).
pub fn interval_millis(v: &ScalarValue) -> Option<Millis> {
    match v {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(v.days as Millis * DAY + v.nanoseconds / 1_000_000)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(v.days as Millis * DAY + v.milliseconds as Millis)
        }
        _ => None,
    }
}

/// An interval value that counts months or years.
pub fn counts_months(v: &ScalarValue) -> bool {
    match v {
        ScalarValue::IntervalMonthDayNano(Some(v)) => v.months != 0,
        ScalarValue::IntervalYearMonth(_) => true,
        _ => false,
    }
}

/// `10s`, `1min`, `1h30min`, `250ms`: durations as the plan shows them.
pub fn show_duration(ms: Millis) -> String {
    const UNITS: [(Millis, &str); 5] = [
        (DAY, "d"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1_000, "s"),
        (1, "ms"),
    ];
    if ms == 0 {
        return "0s".into();
    }
    let mut rest = ms;
    let mut out = String::new();
    for (unit, name) in UNITS {
        if rest >= unit {
            out.push_str(&format!("{}{name}", rest / unit));
            rest %= unit;
        }
    }
    out
}

/// The watermark of one source: the largest event time seen minus the declared bound.
///
/// Lateness is decided row by row, as if the watermark advanced after every row, so which rows are
/// late does not depend on how rows were cut into batches (a replay and a live run agree).
///
/// A source read in splits that arrive independently (a Kafka topic's partitions) reports each
/// split's rows apart ([`Self::observe_split`]): the watermark then follows the split that is
/// furthest behind, so a partition read after another, when catching up with a backlog, is not
/// late. A split that falls silent is retired ([`Self::retire_split`]) and holds nothing back.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    bound: Millis,
    /// What the watermark follows: the largest event time seen (of the split furthest behind, for
    /// a source read in splits); it never goes back.
    max_seen: Option<Millis>,
    /// The largest event time seen in each split being read.
    splits: std::collections::BTreeMap<u32, Option<Millis>>,
}

/// What [`WatermarkTracker::observe`] found in a batch.
#[derive(Debug)]
pub struct Observed {
    /// Rows to keep, if any row was late.
    pub keep: Option<BooleanArray>,
    pub late: usize,
    /// For each late row, in order, the watermark it was older than.
    pub late_watermarks: Vec<Millis>,
}

impl WatermarkTracker {
    pub fn new(bound: Millis) -> Self {
        Self {
            bound,
            max_seen: None,
            splits: std::collections::BTreeMap::new(),
        }
    }

    /// The current watermark: no row older than this is accepted any more.
    pub fn watermark(&self) -> Option<Millis> {
        self.max_seen.map(|m| m.saturating_sub(self.bound))
    }

    /// The largest event time seen (or given by [`Self::advance_to`]).
    pub fn max_seen(&self) -> Option<Millis> {
        self.max_seen
    }

    /// Moves event time forward to `t` without a row: the idle clock of a silent source.
    pub fn advance_to(&mut self, t: Millis) {
        self.max_seen = Some(self.max_seen.map_or(t, |m| m.max(t)));
    }

    /// Marks rows older than the watermark in force when they arrived as late, and advances the
    /// watermark over the rest.
    pub fn observe(&mut self, times: &[Millis]) -> Observed {
        let mut max = self.max_seen.unwrap_or(Millis::MIN);
        let mut keep: Option<Vec<bool>> = None;
        let mut late = 0;
        let mut late_watermarks = Vec::new();
        for (i, &t) in times.iter().enumerate() {
            if t < max.saturating_sub(self.bound) {
                keep.get_or_insert_with(|| vec![true; times.len()])[i] = false;
                late += 1;
                late_watermarks.push(max.saturating_sub(self.bound));
            } else if t > max {
                max = t;
            }
        }
        if !times.is_empty() {
            self.max_seen = Some(max);
        }
        Observed {
            keep: keep.map(BooleanArray::from),
            late,
            late_watermarks,
        }
    }
}

impl WatermarkTracker {
    /// Split `split` is read from now on (a partition assigned): until it has rows or is retired,
    /// it holds the watermark where it is.
    pub fn add_split(&mut self, split: u32) {
        self.splits.entry(split).or_insert(None);
    }

    /// Split `split` is no longer read, or has fallen silent: it holds the watermark back no
    /// more. Rows it sends later make it a split again, judged against the watermark then in force.
    pub fn retire_split(&mut self, split: u32) {
        if self.splits.remove(&split).is_some() {
            self.follow_splits();
        }
    }

    /// The splits being read.
    pub fn splits(&self) -> impl Iterator<Item = u32> + '_ {
        self.splits.keys().copied()
    }

    /// [`Self::observe`] for rows of one split: a row is late when it is older than the watermark
    /// in force, which follows the split furthest behind (this split's largest time so far
    /// included); the watermark then moves to what the splits allow.
    pub fn observe_split(&mut self, split: u32, times: &[Millis]) -> Observed {
        let others = self
            .splits
            .iter()
            .filter(|(s, _)| **s != split)
            .map(|(_, m)| m.unwrap_or(Millis::MIN))
            .min();
        let floor = self.max_seen.unwrap_or(Millis::MIN);
        let mut own = self.splits.get(&split).copied().flatten();
        let mut keep: Option<Vec<bool>> = None;
        let mut late = 0;
        let mut late_watermarks = Vec::new();
        for (i, &t) in times.iter().enumerate() {
            let behind = match (others, own) {
                (Some(o), Some(m)) => o.min(m),
                (Some(_), None) | (None, None) => Millis::MIN,
                (None, Some(m)) => m,
            };
            let basis = floor.max(behind);
            if basis != Millis::MIN && t < basis.saturating_sub(self.bound) {
                keep.get_or_insert_with(|| vec![true; times.len()])[i] = false;
                late += 1;
                late_watermarks.push(basis.saturating_sub(self.bound));
            } else if own.is_none_or(|m| t > m) {
                own = Some(t);
            }
        }
        if own.is_some() || !self.splits.contains_key(&split) {
            self.splits.insert(split, own);
        }
        self.follow_splits();
        Observed {
            keep: keep.map(BooleanArray::from),
            late,
            late_watermarks,
        }
    }

    /// The watermark follows the split furthest behind, once every split has rows.
    fn follow_splits(&mut self) {
        if let Some(Some(min)) = self
            .splits
            .values()
            .min_by_key(|m| m.unwrap_or(Millis::MIN))
        {
            let min = *min;
            self.max_seen = Some(self.max_seen.map_or(min, |m| m.max(min)));
        }
    }
}

/// The start of the window of length `size` (aligned to the epoch) that holds `t`.
pub fn align(t: Millis, size: Millis) -> Millis {
    t - t.rem_euclid(size)
}

/// The start of the `size`-long slice holding `t`, slices starting at `offset` (and every `size`
/// before and after it): Flink's window offset.
pub fn align_at(t: Millis, size: Millis, offset: Millis) -> Millis {
    offset.saturating_add(align(t.saturating_sub(offset), size))
}

pub fn gcd(a: Millis, b: Millis) -> Millis {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_rows_are_judged_against_the_rows_before_them() {
        let mut w = WatermarkTracker::new(2_000);
        // 10s, then 7.9s (late: 10-2 = 8), then 8s (on time), then 12s.
        let o = w.observe(&[10_000, 7_900, 8_000, 12_000]);
        assert_eq!(o.late, 1);
        assert_eq!(
            o.keep.unwrap(),
            BooleanArray::from(vec![true, false, true, true])
        );
        assert_eq!(w.watermark(), Some(10_000));
        // The same rows cut into other batches give the same answer.
        let mut w2 = WatermarkTracker::new(2_000);
        assert_eq!(w2.observe(&[10_000]).late, 0);
        assert_eq!(w2.observe(&[7_900, 8_000]).late, 1);
        assert_eq!(w2.observe(&[12_000]).late, 0);
        assert_eq!(w2.watermark(), Some(10_000));
    }

    #[test]
    fn the_watermark_of_a_source_read_in_splits_follows_the_split_furthest_behind() {
        let mut w = WatermarkTracker::new(1_000);
        w.add_split(0);
        w.add_split(1);
        // Split 0 is read to 60 s before split 1 is read from 0 s (a backlog, partition after
        // partition): split 1 has no rows yet, so the watermark waits, and none of its rows is late.
        assert_eq!(w.observe_split(0, &[10_000, 30_000, 60_000]).late, 0);
        assert_eq!(w.watermark(), None);
        assert_eq!(w.observe_split(1, &[0, 20_000, 40_000]).late, 0);
        assert_eq!(w.watermark(), Some(39_000));
        // Within a split, rows are judged against the watermark in force.
        let o = w.observe_split(1, &[38_500, 39_500, 45_000]);
        assert_eq!(o.keep.unwrap(), BooleanArray::from(vec![false, true, true]));
        assert_eq!(w.watermark(), Some(44_000));
        // Split 1 falls silent and is retired: split 0 alone leads.
        w.retire_split(1);
        assert_eq!(w.watermark(), Some(59_000));
        // A split assigned later holds the watermark where it is, never back.
        w.add_split(2);
        assert_eq!(w.observe_split(0, &[70_000]).late, 0);
        assert_eq!(w.watermark(), Some(59_000));
        assert_eq!(w.observe_split(2, &[58_000, 65_000]).late, 1);
        assert_eq!(w.watermark(), Some(64_000));
    }

    #[test]
    fn no_rows_no_watermark() {
        let mut w = WatermarkTracker::new(0);
        assert_eq!(w.watermark(), None);
        assert!(w.observe(&[]).keep.is_none());
        assert_eq!(w.watermark(), None);
    }

    #[test]
    fn windows_align_to_the_epoch_also_before_it() {
        assert_eq!(align(12_345, 10_000), 10_000);
        assert_eq!(align(-1, 10_000), -10_000);
        assert_eq!(gcd(60_000, 10_000), 10_000);
        assert_eq!(gcd(15_000, 10_000), 5_000);
    }
}
