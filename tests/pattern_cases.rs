//! MATCH_RECOGNIZE cases worked out by hand from the standard's rules: every folder of
//! `tests/patterns` holds a query file, its input and the matches it must report (greedy and
//! reluctant quantifiers, each AFTER MATCH SKIP mode, alternation preference, empty matches, PREV
//! at a partition's start, WITHIN, and the rules "three rising readings ending above 80", "a spike
//! followed within a minute by a door opening", "above 30 degrees for more than 5 minutes").

mod common;

use std::path::Path;

#[test]
fn pattern_matches_equal_the_hand_worked_ones() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/patterns");
    let n = common::check_case_folders(&cases, 1e-12);
    assert!(n >= 8, "the pattern cases are missing: {n} found");
}
