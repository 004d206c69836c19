//! Arrival order does not matter within the watermark bound: the same readings, delivered in
//! different orders (each reading at most 3 s behind the newest, the bound is 5 s) and in batches
//! of different sizes, give the same windows, moving averages and view results.

mod common;

use common::Lcg;

const START: i64 = 1_767_225_600_000;

/// The readings (device, temp, ts): 4 devices, one reading a second for 5 minutes.
fn readings() -> Vec<(u32, f64, i64)> {
    let mut rng = Lcg(42);
    let mut rows = Vec::new();
    for s in 0..300i64 {
        for d in 0..4u32 {
            let ts = START + s * 1_000 + (rng.next() % 1_000) as i64;
            let temp = 60.0 + d as f64 * 5.0 + (rng.next() % 2_000) as f64 / 100.0;
            rows.push((d, temp, ts));
        }
    }
    rows
}

/// One arrival order: each reading delayed by up to 3 s.
fn arrival_order(rows: &[(u32, f64, i64)], seed: u64) -> String {
    let mut rng = Lcg(seed);
    let mut arriving: Vec<(i64, usize)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.2 + (rng.next() % 3_000) as i64, i))
        .collect();
    arriving.sort();
    arriving
        .iter()
        .map(|&(_, i)| {
            let (d, temp, ts) = rows[i];
            format!(r#"{{"device_id":"d{d}","temp":{temp},"ts":{ts}}}"#)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const QUERIES: &str = "
CREATE SINK out WITH (connector = 'file', path = 'out.jsonl', mode = 'truncate');

CREATE VIEW smoothed AS
SELECT device_id, ts, temp,
       avg(temp) OVER (PARTITION BY device_id ORDER BY ts ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) AS avg5,
       max(temp) OVER (PARTITION BY device_id ORDER BY ts
                       RANGE BETWEEN INTERVAL '20' SECOND PRECEDING AND CURRENT ROW) AS max20s
FROM readings;

INSERT INTO out SELECT 'over' AS q, device_id, ts, avg5, max20s FROM smoothed WHERE avg5 > 70;

INSERT INTO out
SELECT 'tumble' AS q, device_id, window_start, avg(temp) AS a, max(temp) AS m, count(*) AS n
FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
GROUP BY device_id, window_start, window_end;

INSERT INTO out
SELECT 'hop' AS q, device_id, window_start, avg(avg5) AS a, count(*) AS n
FROM HOP(smoothed, ts, INTERVAL '5' SECOND, INTERVAL '30' SECOND)
GROUP BY device_id, window_start, window_end;

INSERT INTO out
SELECT 'session' AS q, device_id, window_start, window_end, count(*) AS n, max(temp) AS m
FROM SESSION(readings, ts, INTERVAL '1200' MILLISECOND)
GROUP BY device_id, window_start, window_end;

INSERT INTO out
SELECT 'join' AS q, a.device_id, a.ts, b.ts AS later, b.temp - a.temp AS rise
FROM readings a JOIN readings b
  ON a.device_id = b.device_id AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '2' SECOND
 AND b.temp > a.temp + 10;
";

fn run(input: &str, batch_size: usize) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("input.jsonl"), input).expect("input written");
    let query = format!(
        "CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
         WITH (connector = 'file', path = 'input.jsonl', batch_size = '{batch_size}');
         {QUERIES}"
    );
    std::fs::write(dir.path().join("q.sql"), query).expect("query written");
    let out = common::run_eddy(dir.path(), &["run", "q.sql", "--quiet", "--stats"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("\"late\":0"),
        "no reading may be late: {stderr}"
    );
    std::fs::read_to_string(dir.path().join("out.jsonl")).expect("output")
}

#[test]
fn any_arrival_order_within_the_bound_gives_the_same_results() {
    let rows = readings();
    let reference = run(&arrival_order(&rows, 1), 8192);
    let kinds = common::parse_lines(&reference);
    for q in ["over", "tumble", "hop", "session", "join"] {
        assert!(
            kinds.iter().filter(|r| r["q"] == q).count() > 20,
            "too few {q} rows to compare"
        );
    }
    for (seed, batch_size) in [(2, 8192), (3, 1), (4, 7), (5, 100), (6, 4096)] {
        let other = run(&arrival_order(&rows, seed), batch_size);
        if let Err(diff) = common::compare_rows(&other, &reference, 1e-9) {
            panic!("arrival order {seed} in batches of {batch_size} differs:\n{diff}");
        }
    }
}
