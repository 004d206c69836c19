//! Bad input has a defined outcome and stops nothing: oversized records, invalid UTF-8, NaN and
//! infinities, timestamps far in the future or past, unparsable timestamps. Each bad line is a
//! dead letter with its reason (or, for a reading older than the watermark, a counted late row),
//! and every good line still comes out. A million distinct device ids go through a window.

mod common;

use std::io::Write;

use common::stats;

#[test]
fn each_kind_of_bad_line_is_a_dead_letter_with_its_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut input = Vec::new();
    let good = |s: u32, temp: f64| {
        format!(r#"{{"device_id":"d1","temp":{temp},"ts":"2026-01-01T00:00:{s:02}.000Z"}}"#)
    };
    writeln!(input, "{}", good(1, 20.0)).unwrap();
    // 1. A line of 2 MiB (the default limit is 1 MiB).
    writeln!(
        input,
        r#"{{"device_id":"d1","note":"{}","temp":1,"ts":"2026-01-01T00:00:02Z"}}"#,
        "x".repeat(2 << 20)
    )
    .unwrap();
    writeln!(input, "{}", good(3, 21.0)).unwrap();
    // 2. Invalid UTF-8 in a string.
    input.extend_from_slice(
        b"{\"device_id\":\"d\xff\xfe1\",\"temp\":1,\"ts\":\"2026-01-01T00:00:04Z\"}\n",
    );
    // 3. NaN and infinity.
    writeln!(
        input,
        r#"{{"device_id":"d1","temp":"NaN","ts":"2026-01-01T00:00:05Z"}}"#
    )
    .unwrap();
    writeln!(
        input,
        r#"{{"device_id":"d1","temp":1e999,"ts":"2026-01-01T00:00:06Z"}}"#
    )
    .unwrap();
    // 4. A clock decades ahead, and a timestamp that is no time at all.
    writeln!(
        input,
        r#"{{"device_id":"d1","temp":1,"ts":"2099-01-01T00:00:00Z"}}"#
    )
    .unwrap();
    writeln!(
        input,
        r#"{{"device_id":"d1","temp":1,"ts":"+300000-01-01T00:00:00Z"}}"#
    )
    .unwrap();
    writeln!(input, "{}", good(8, 22.0)).unwrap();
    // 5. A clock decades behind: older than the watermark, so late (counted, not a dead letter).
    writeln!(
        input,
        r#"{{"device_id":"d1","temp":1,"ts":"1971-01-01T00:00:00Z"}}"#
    )
    .unwrap();
    writeln!(input, "{}", good(9, 23.0)).unwrap();
    std::fs::write(dir.path().join("input.jsonl"), input).expect("input written");
    std::fs::write(
        dir.path().join("q.sql"),
        "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
          WITH (connector = 'file', path = 'input.jsonl', dead_letter = 'dead.jsonl');
         CREATE SINK out WITH (connector = 'file', path = 'out.jsonl');
         INSERT INTO out SELECT device_id, temp, ts FROM readings;",
    )
    .expect("query written");
    let run = common::run_eddy(dir.path(), &["run", "q.sql", "--quiet", "--stats"], &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");

    let out =
        common::parse_lines(&std::fs::read_to_string(dir.path().join("out.jsonl")).expect("out"));
    let temps: Vec<f64> = out
        .iter()
        .map(|r| r["temp"].as_f64().expect("temp"))
        .collect();
    assert_eq!(temps, [20.0, 21.0, 22.0, 23.0], "the good lines, in order");

    let dead = common::parse_lines(
        &std::fs::read_to_string(dir.path().join("dead.jsonl")).expect("dead letters"),
    );
    let by_line = |line: u32| {
        dead.iter()
            .find(|d| {
                d["origin"]
                    .as_str()
                    .is_some_and(|o| o.ends_with(&format!("input.jsonl:{line}")))
            })
            .unwrap_or_else(|| panic!("no dead letter for line {line}: {dead:?}"))
    };
    let reason = |line: u32| {
        by_line(line)["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        reason(2).contains("longer than max_record_bytes"),
        "{}",
        reason(2)
    );
    assert!(
        by_line(2)["payload"]
            .as_str()
            .is_some_and(|p| p.len() <= 1024)
    );
    assert!(!reason(4).is_empty());
    assert!(
        by_line(4)["payload"]
            .as_str()
            .is_some_and(|p| p.contains('\u{fffd}')),
        "the payload keeps the bytes it could"
    );
    assert!(reason(5).contains("temp"), "{}", reason(5));
    assert!(reason(6).contains("temp is inf"), "{}", reason(6));
    assert!(reason(8).contains("ts"), "{}", reason(8));
    let future = dead
        .iter()
        .find(|d| {
            d["reason"]
                .as_str()
                .is_some_and(|r| r.contains("ahead of the clock"))
        })
        .unwrap_or_else(|| panic!("no dead letter for the timestamp in 2099: {dead:?}"));
    assert!(
        future["payload"]
            .as_str()
            .is_some_and(|p| p.contains("2099")),
        "{future:?}"
    );
    assert_eq!(dead.len(), 6, "{dead:?}");

    let s = stats(&stderr);
    assert_eq!(s["late"], 1, "{s}");
    assert_eq!(s["dead_letters"], 6, "{s}");
}

#[test]
fn a_million_distinct_devices_each_get_their_window() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut input = Vec::with_capacity(80 << 20);
    for i in 0..1_000_000u64 {
        // 10,000 new devices a second for 100 seconds, each reporting once.
        let ms = 1_767_225_600_000 + i / 10;
        writeln!(
            input,
            r#"{{"device_id":"dev-{i}","temp":{},"ts":{ms}}}"#,
            i % 50
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("input.jsonl"), input).expect("input written");
    std::fs::write(
        dir.path().join("q.sql"),
        "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
          WITH (connector = 'file', path = 'input.jsonl');
         CREATE SINK out WITH (connector = 'file', path = 'out.jsonl');
         INSERT INTO out
         SELECT device_id, window_start, count(*) AS n
         FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
         GROUP BY device_id, window_start, window_end;",
    )
    .expect("query written");
    let run = common::run_eddy(dir.path(), &["run", "q.sql", "--quiet", "--stats"], &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).expect("out");
    let mut windows = 0;
    for line in out.lines() {
        assert!(
            line.contains(r#""n":1}"#),
            "one reading per device and window: {line}"
        );
        windows += 1;
    }
    assert_eq!(windows, 1_000_000);
    let s = stats(&stderr);
    assert_eq!(s["events"], 1_000_000, "{s}");
    assert_eq!(s["late"], 0, "{s}");
}
