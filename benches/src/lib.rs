//! Workloads shared by Eddy's benchmarks: sensor readings for many devices, slightly out of order,
//! as JSON lines (what the end-to-end harness replays through `eddy run`) or as Arrow batches
//! (what the operator benchmarks push through a pipeline), and the query files they run.

use std::io::{self, Write};
use std::sync::Arc;

use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// 2026-01-01T00:00:00Z in milliseconds.
pub const START_MS: i64 = 1_767_225_600_000;

/// How far a reading may arrive behind the newest one; the queries' watermark bound is larger,
/// so no reading of a workload is late.
pub const DISORDER_MS: i64 = 2_000;

/// One reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub device: u32,
    pub temp: f64,
    pub ts: i64,
}

/// `events` readings from `devices` devices, each reporting once a second, in arrival order: every
/// reading is delayed by up to [`DISORDER_MS`], so the stream is out of order within that bound.
/// Devices whose number ends in 7 run hot (around 80 °C), so threshold queries have alerts to emit.
/// The same arguments give the same readings.
pub fn readings(events: usize, devices: u32) -> Vec<Reading> {
    let devices = devices.max(1);
    let mut rng = SplitMix64(0x00ed_d7be_0c4e);
    let mut out: Vec<(i64, Reading)> = (0..events)
        .map(|i| {
            let device = (i as u64 % devices as u64) as u32;
            let second = (i as u64 / devices as u64) as i64;
            let ts = START_MS + second * 1_000 + (rng.next() % 1_000) as i64;
            let base = if device % 10 == 7 {
                80.0
            } else {
                20.0 + (device % 40) as f64
            };
            let temp = base + (rng.next() % 1_000) as f64 / 100.0 - 5.0;
            let arrival = ts + (rng.next() % DISORDER_MS as u64) as i64;
            (arrival, Reading { device, temp, ts })
        })
        .collect();
    out.sort_by_key(|(arrival, _)| *arrival);
    out.into_iter().map(|(_, r)| r).collect()
}

/// The device id of device number `n`.
pub fn device_id(n: u32) -> String {
    format!("machine-{n:06}")
}

/// Writes readings as JSON lines: `{"device_id":"machine-000042","temp":61.25,"ts":"2026-..."}`.
pub fn write_json_lines(readings: &[Reading], out: &mut impl Write) -> io::Result<()> {
    for r in readings {
        let ts = chrono::DateTime::from_timestamp_millis(r.ts)
            .ok_or_else(|| io::Error::other(format!("timestamp {} out of range", r.ts)))?;
        writeln!(
            out,
            r#"{{"device_id":"{}","temp":{:.2},"ts":"{}"}}"#,
            device_id(r.device),
            r.temp,
            ts.format("%Y-%m-%dT%H:%M:%S%.3fZ")
        )?;
    }
    Ok(())
}

/// The schema of the `readings` source the benchmark queries declare.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("temp", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]))
}

/// Readings as source batches of at most `batch_size` rows, in arrival order.
pub fn batches(readings: &[Reading], batch_size: usize) -> Vec<RecordBatch> {
    readings
        .chunks(batch_size.max(1))
        .map(|chunk| {
            let ids: StringArray = chunk.iter().map(|r| Some(device_id(r.device))).collect();
            let temps: Float64Array = chunk.iter().map(|r| Some(r.temp)).collect();
            let ts: TimestampMillisecondArray = chunk.iter().map(|r| Some(r.ts)).collect();
            RecordBatch::try_new(schema(), vec![Arc::new(ids), Arc::new(temps), Arc::new(ts)])
                .expect("the columns match the schema")
        })
        .collect()
}

/// A benchmark query: its name and the `INSERT INTO alerts SELECT ...` it runs.
pub struct Workload {
    pub name: &'static str,
    pub insert: &'static str,
}

/// The tumbling query of the performance target: 10-second windows per device, avg/max/count and
/// a HAVING threshold.
pub const TUMBLE: Workload = Workload {
    name: "tumble 10s",
    insert: "INSERT INTO alerts
SELECT device_id, window_start, window_end,
       avg(temp) AS avg_temp, max(temp) AS max_temp, count(*) AS readings
FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
GROUP BY device_id, window_start, window_end
HAVING avg(temp) > 75;",
};

/// The hopping query of the performance target: 1-minute windows sliding every 10 seconds.
pub const HOP: Workload = Workload {
    name: "hop 1min/10s",
    insert: "INSERT INTO alerts
SELECT device_id, window_start, window_end,
       avg(temp) AS avg_temp, max(temp) AS max_temp, count(*) AS readings
FROM HOP(readings, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start, window_end
HAVING avg(temp) > 75;",
};

/// A moving average over each device's last 10 readings, in event-time order, with a threshold.
pub const MOVING_AVERAGE: Workload = Workload {
    name: "over 10 rows",
    insert: "CREATE VIEW smoothed AS
SELECT device_id, ts,
       avg(temp) OVER (PARTITION BY device_id ORDER BY ts
                       ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS avg10
FROM readings;

INSERT INTO alerts SELECT device_id, ts, avg10 FROM smoothed WHERE avg10 > 82.0005;",
};

/// Sessions of readings less than 1.5 s apart, per device.
pub const SESSIONS: Workload = Workload {
    name: "session 1.5s",
    insert: "INSERT INTO alerts
SELECT device_id, window_start, window_end, count(*) AS readings, max(temp) AS max_temp
FROM SESSION(readings, ts, INTERVAL '1500' MILLISECOND)
GROUP BY device_id, window_start, window_end
HAVING count(*) > 3;",
};

/// Three readings rising in a row, the last above 80 (MATCH_RECOGNIZE).
pub const RISING: Workload = Workload {
    name: "pattern rising",
    insert: "INSERT INTO alerts
SELECT * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(A.ts) AS started, LAST(C.ts) AS ended, LAST(C.temp) AS peak
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (A B C)
    DEFINE B AS temp > PREV(temp), C AS temp > PREV(temp) AND temp > 80
);",
};

/// A long quantifier bounded in time: 2 to 20 warm readings, then a hot one, within 30 s.
pub const WARM_THEN_HOT: Workload = Workload {
    name: "pattern {2,20}",
    insert: "INSERT INTO alerts
SELECT * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(W.ts) AS warm_since, LAST(H.ts) AS hot_at, COUNT(W.*) AS warm_readings
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (W{2,20} H) WITHIN INTERVAL '30' SECOND
    DEFINE W AS temp > 76, H AS temp > 84
);",
};

/// Cumulating windows: per device, the running aggregates of each minute, every 10 seconds.
pub const CUMULATE: Workload = Workload {
    name: "cumulate 10s/1min",
    insert: "INSERT INTO alerts
SELECT device_id, window_start, window_end,
       avg(temp) AS avg_temp, max(temp) AS max_temp, count(*) AS readings
FROM CUMULATE(readings, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start, window_end
HAVING avg(temp) > 75;",
};

/// Window Top-N: the three hottest devices of every 10-second window.
pub const TOP_N: Workload = Workload {
    name: "window top-3",
    insert: "INSERT INTO alerts
SELECT * FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end
                                 ORDER BY avg_temp DESC) AS rownum
    FROM (SELECT window_start, window_end, device_id, avg(temp) AS avg_temp
          FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
          GROUP BY device_id, window_start, window_end))
WHERE rownum <= 3;",
};

/// A window join of two window aggregates of the readings: each device's 10-second average
/// beside its count of readings above 80, for the windows that have some.
pub const WINDOW_JOIN: Workload = Workload {
    name: "window join",
    insert: "INSERT INTO alerts
SELECT a.device_id, a.window_start, a.avg_temp, h.hot
FROM (SELECT device_id, window_start, window_end, avg(temp) AS avg_temp
      FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
      GROUP BY device_id, window_start, window_end) a
JOIN (SELECT device_id, window_start, window_end, count(*) AS hot
      FROM TUMBLE(readings, ts, INTERVAL '10' SECOND) WHERE temp > 80
      GROUP BY device_id, window_start, window_end) h
  ON a.device_id = h.device_id AND a.window_start = h.window_start
 AND a.window_end = h.window_end;",
};

/// The rising pattern with every row of each match (ALL ROWS PER MATCH), its step and the count so
/// far.
pub const RISING_ALL_ROWS: Workload = Workload {
    name: "pattern all rows",
    insert: "INSERT INTO alerts
SELECT * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES MATCH_NUMBER() AS rise, CLASSIFIER() AS step, RUNNING COUNT(*) AS so_far,
             FINAL LAST(C.temp) AS peak
    ALL ROWS PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (A B C)
    DEFINE B AS temp > PREV(temp), C AS temp > PREV(temp) AND temp > 80
);",
};

pub const WORKLOADS: [Workload; 10] = [
    TUMBLE,
    HOP,
    MOVING_AVERAGE,
    SESSIONS,
    RISING,
    WARM_THEN_HOT,
    CUMULATE,
    TOP_N,
    WINDOW_JOIN,
    RISING_ALL_ROWS,
];

/// A complete query file: the readings source (a JSON-lines file at `input`), the alerts sink
/// (a JSON-lines file at `output`) and the workload's query.
pub fn query_file(workload: &Workload, input: &str, output: &str) -> String {
    format!(
        "CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
) WITH (connector = 'file', path = '{input}', format = 'json');

CREATE SINK alerts WITH (connector = 'file', path = '{output}', mode = 'truncate');

{}
",
        workload.insert
    )
}

/// A small, fast, deterministic generator (SplitMix64): benchmarks need repeatable data, not
/// cryptographic randomness.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The `eddy` binary the harnesses run: `given`, or `eddy` beside the harness in the same target
/// directory; an error saying how to build it when it is not there.
pub fn eddy_binary(given: Option<&std::path::Path>) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    let eddy = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("the harness has no directory")?
            .join("eddy"),
    };
    if !eddy.exists() {
        anyhow::bail!(
            "{} does not exist: build it first with `cargo build --release --workspace --bins`, \
             or pass --eddy PATH",
            eddy.display()
        );
    }
    Ok(eddy)
}

/// `host:port`, as the harnesses take a broker.
pub fn host_port(address: &str) -> anyhow::Result<(String, u16)> {
    address
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("'{address}' is not host:port"))
}

/// A process the harness started (`eddy`), killed and waited for when dropped, whatever
/// happened to the measurement.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The wall clock, in milliseconds since the epoch (as readings are stamped).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_out_of_order_within_the_bound_and_repeatable() {
        let a = readings(10_000, 100);
        assert_eq!(a, readings(10_000, 100));
        assert_eq!(a.len(), 10_000);
        let mut newest = i64::MIN;
        let mut behind = 0;
        for r in &a {
            assert!(
                r.ts >= newest.saturating_sub(DISORDER_MS),
                "{r:?} is behind {newest}"
            );
            if r.ts < newest {
                behind += 1;
            }
            newest = newest.max(r.ts);
        }
        assert!(behind > 1_000, "only {behind} readings arrive out of order");
    }

    #[test]
    fn json_lines_round_trip_the_readings() {
        let r = readings(3, 2);
        let mut text = Vec::new();
        write_json_lines(&r, &mut text).unwrap();
        let lines: Vec<serde_json::Value> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["device_id"], device_id(r[0].device));
        let ts = chrono::DateTime::parse_from_rfc3339(lines[0]["ts"].as_str().unwrap()).unwrap();
        assert_eq!(ts.timestamp_millis(), r[0].ts);
    }
}
