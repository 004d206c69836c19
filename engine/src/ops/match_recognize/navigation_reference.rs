//! The property test that navigation in measures and conditions (`FIRST` / `LAST` with logical
//! offsets, `PREV` / `NEXT` around them, over one variable, a `SUBSET` or the whole match, running
//! at a row of the match or final) reads the row the standard's definitions name. The reference
//! here walks the match row by row, counting the rows of the variables, then steps through the
//! partition, as the definitions read; the operator's [`over_rows`] must read the same row.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;

use super::measures::over_rows;
use super::spec::{Nav, NavKind};

/// The row a navigation reads, by the definitions: among the match's rows up to `upto` (running)
/// mapped to one of `vars` (all when `None`), the `offset`-th from the first (`FIRST`) or from
/// the last (`LAST`), then `physical` rows further in the partition of `partition_rows` rows.
fn reference_row(
    rows: &[(u64, usize)],
    upto: usize,
    vars: Option<&[usize]>,
    (first, offset, physical): (bool, usize, i64),
    partition_rows: u64,
) -> Option<u64> {
    let mut seen = 0;
    let mut base = None;
    for i in 0..upto {
        let (row, var) = if first { rows[i] } else { rows[upto - 1 - i] };
        if vars.is_none_or(|s| s.contains(&var)) {
            if seen == offset {
                base = Some(row as i64);
                break;
            }
            seen += 1;
        }
    }
    let target = base? + physical;
    (0..partition_rows as i64)
        .contains(&target)
        .then_some(target as u64)
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
fn navigation_reads_the_row_the_definitions_name() {
    let mut rng = Lcg(11);
    for case in 0..20_000 {
        let partition_rows = 1 + rng.next(16);
        let start = rng.next(partition_rows);
        let len = rng.next(partition_rows - start + 1);
        let rows: Vec<(u64, usize)> = (start..start + len)
            .map(|r| (r, rng.next(3) as usize))
            .collect();
        // One variable, a SUBSET of two, or the whole match.
        let vars: Option<Vec<usize>> = match rng.next(3) {
            0 => Some(vec![rng.next(3) as usize]),
            1 => Some(vec![0, 2]),
            _ => None,
        };
        let first = rng.next(2) == 0;
        let offset = rng.next(4) as usize;
        let physical = rng.next(7) as i64 - 3;
        let upto = rng.next(len + 1) as usize;
        let nav = Nav {
            kind: if first {
                NavKind::First(offset)
            } else {
                NavKind::Last(offset)
            },
            var: vars.clone(),
            column: Some(0),
            data_type: DataType::UInt64,
            physical,
            final_: false,
        };
        let seqs: Vec<u64> = rows[..upto]
            .iter()
            .filter(|(_, v)| nav.reads(*v))
            .map(|(r, _)| *r)
            .collect();
        // Each row's value is its own number: the value says which row was read.
        let got = over_rows(&nav, &seqs, partition_rows, |seq, _| {
            Ok(ScalarValue::UInt64(Some(seq)))
        })
        .expect("reads");
        let expected = reference_row(
            &rows,
            upto,
            vars.as_deref(),
            (first, offset, physical),
            partition_rows,
        );
        assert_eq!(
            got,
            ScalarValue::UInt64(expected),
            "case {case}: rows {rows:?} up to {upto}, vars {vars:?}, first {first}, offset {offset}, physical {physical}, partition of {partition_rows}"
        );
    }
}
