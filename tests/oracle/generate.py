#!/usr/bin/env python3
"""Regenerates the window test cases in tests/cases/: inputs, Eddy query files, and the expected
outputs computed by DuckDB from the same rows.

    pip install duckdb && python3 tests/oracle/generate.py

Each case is a folder with query.sql (what Eddy runs: a file source reading input.jsonl, a file sink
writing to $OUT), input.jsonl (the lines in arrival order: out of order within the watermark bound,
some late rows, some null temperatures, timestamps as RFC 3339 strings with and without offsets
and as epoch milliseconds, and a few lines that are not valid readings), and expected.jsonl (what
DuckDB answers). DuckDB sees only the valid lines, each with its arrival position `seq`, and applies
the lateness rule of the design: a row is late, and dropped, when its time is older than the
largest time among the rows before it minus the watermark bound. Everything else is a plain batch
GROUP BY, which is what a continuous query must equal once its input has ended.
"""

import json
import os
import random
import shutil
from datetime import datetime, timedelta, timezone

import duckdb

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cases")
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
BOUND_S = 5

SOURCE = """CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    humidity  DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '{bound}' SECOND
) WITH (connector = 'file', path = 'input.jsonl'{extra});

CREATE SINK out WITH (connector = 'file', path = '${{OUT}}', mode = 'truncate');
"""

# DuckDB: the valid rows in arrival order, with late rows dropped as the engine drops them.
ON_TIME = """
WITH input AS (
    SELECT seq, device_id, temp, humidity, ts, epoch_ms(ts) AS t FROM rows
),
marked AS (
    SELECT *, max(t) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_max
    FROM input
),
on_time AS (
    SELECT * FROM marked WHERE prev_max IS NULL OR t >= prev_max - {bound_ms}
)
"""


def tumble(size_ms):
    return f"""
, windows AS (
    SELECT *, (t // {size_ms}) * {size_ms} AS ws, (t // {size_ms}) * {size_ms} + {size_ms} AS we
    FROM on_time
)
"""


def hop(slide_ms, size_ms):
    # Every window [k*slide, k*slide + size) that holds t.
    return f"""
, windows AS (
    SELECT o.*, s AS ws, s + {size_ms} AS we
    FROM on_time o,
         LATERAL (SELECT unnest(range(((o.t - {size_ms}) // {slide_ms} + 1) * {slide_ms},
                                      (o.t // {slide_ms}) * {slide_ms} + 1, {slide_ms})) AS s)
)
"""


def show_duration(ms):
    """A duration as Eddy shows it: 1min5s, 12s250ms."""
    if ms == 0:
        return "0s"
    out = ""
    for unit, name in [(86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1_000, "s"), (1, "ms")]:
        if ms >= unit:
            out += f"{ms // unit}{name}"
            ms %= unit
    return out


def late_reason(row):
    """The reason a late row carries to the late sink."""
    if row["late_watermark_ms"] is None:
        row["late_reason"] = None
    else:
        behind = show_duration(row["late_watermark_ms"] - row["t"])
        row["late_reason"] = f"ts is {behind} behind the watermark (the newest ts seen minus the {show_duration(BOUND_S * 1000)} bound)"
    del row["late_watermark_ms"], row["t"]
    return row


def ts_text(col):
    return f"strftime(make_timestamp({col} * 1000), '%Y-%m-%dT%H:%M:%S.%gZ')"


# Per-device limits for the lookup-join case: d4 has none; d3's site is excluded by the LEFT JOIN.
LIMITS = [("d0", 54.0, "north"), ("d1", 62.5, "north"), ("d2", 70.0, "south"), ("d3", 66.0, "east")]
LIMITS_CSV = "device_id,site,max_temp\n" + "".join(f"{d},{s},{m}\n" for d, m, s in LIMITS)
LIMITS_SQL = "CREATE TABLE limits (device_id TEXT, max_temp DOUBLE, site TEXT); INSERT INTO limits VALUES " + ", ".join(
    f"('{d}', {m}, '{s}')" for d, m, s in LIMITS
)

CASES = [
    {
        "name": "tumble_aggregates",
        "about": "TUMBLE 10 s per device: count, sum, avg, min, max, stddev, HAVING",
        "seed": 1,
        "eddy": """INSERT INTO out
SELECT device_id, window_start, window_end,
       count(*) AS n, count(temp) AS n_temp, sum(temp) AS sum_temp, avg(temp) AS avg_temp,
       min(temp) AS min_temp, max(temp) AS max_temp, stddev(temp) AS sd_temp
FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
GROUP BY device_id, window_start, window_end
HAVING avg(temp) > 60;
""",
        "duckdb": tumble(10_000) + f"""
SELECT device_id, {ts_text('ws')} AS window_start, {ts_text('we')} AS window_end,
       count(*) AS n, count(temp) AS n_temp, sum(temp) AS sum_temp, avg(temp) AS avg_temp,
       min(temp) AS min_temp, max(temp) AS max_temp, stddev_samp(temp) AS sd_temp
FROM windows GROUP BY device_id, ws, we HAVING avg(temp) > 60
""",
    },
    {
        "name": "hop_one_minute_every_ten_seconds",
        "about": "HOP 1 min sliding 10 s per device, computed from panes",
        "seed": 2,
        "eddy": """INSERT INTO out
SELECT device_id, window_start, window_end, avg(temp) AS avg_temp, max(temp) AS max_temp,
       count(*) AS n
FROM HOP(readings, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start, window_end
HAVING avg(temp) > 55;
""",
        "duckdb": hop(10_000, 60_000) + f"""
SELECT device_id, {ts_text('ws')} AS window_start, {ts_text('we')} AS window_end,
       avg(temp) AS avg_temp, max(temp) AS max_temp, count(*) AS n
FROM windows GROUP BY device_id, ws, we HAVING avg(temp) > 55
""",
    },
    {
        "name": "hop_slide_not_dividing_size",
        "about": "HOP 40 s sliding 15 s (panes of 5 s), min/max/sum/stddev",
        "seed": 3,
        "eddy": """INSERT INTO out
SELECT device_id, window_start, window_end, min(temp) AS lo, max(temp) AS hi,
       sum(humidity) AS hum, stddev(temp) AS sd
FROM HOP(readings, ts, INTERVAL '15' SECOND, INTERVAL '40' SECOND)
GROUP BY device_id, window_start, window_end;
""",
        "duckdb": hop(15_000, 40_000) + f"""
SELECT device_id, {ts_text('ws')} AS window_start, {ts_text('we')} AS window_end,
       min(temp) AS lo, max(temp) AS hi, sum(humidity) AS hum, stddev_samp(temp) AS sd
FROM windows GROUP BY device_id, ws, we
""",
    },
    {
        "name": "tumble_without_keys_with_filter_and_case",
        "about": "TUMBLE 1 min over all devices, WHERE, CASE, expressions, FILTER, Flink spelling",
        "seed": 4,
        "eddy": """INSERT INTO out
SELECT window_start, window_end,
       count(*) FILTER (WHERE temp > 65) AS hot,
       count(*) AS n,
       avg(temp * 1.8 + 32) AS avg_f,
       max(CASE WHEN humidity > 50 THEN temp ELSE NULL END) AS max_humid_temp
FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
WHERE device_id <> 'd3'
GROUP BY window_start, window_end;
""",
        "duckdb": tumble(60_000) + f"""
SELECT {ts_text('ws')} AS window_start, {ts_text('we')} AS window_end,
       count(*) FILTER (WHERE temp > 65) AS hot, count(*) AS n,
       avg(temp * 1.8 + 32) AS avg_f,
       max(CASE WHEN humidity > 50 THEN temp ELSE NULL END) AS max_humid_temp
FROM windows WHERE device_id <> 'd3' GROUP BY ws, we
""",
    },
    {
        "name": "stateless_filter_and_projection",
        "about": "no window: WHERE, projection, CASE and functions, late rows still dropped",
        "seed": 5,
        "eddy": """INSERT INTO out
SELECT upper(device_id) AS device, ts, temp * 1.8 + 32 AS temp_f, abs(temp - 70) AS off_70,
       CASE WHEN temp > 75 THEN 'hot' WHEN temp > 65 THEN 'warm' ELSE 'ok' END AS level
FROM readings
WHERE temp > 62 AND humidity IS NOT NULL;
""",
        "duckdb": f"""
SELECT upper(device_id) AS device, {ts_text('t')} AS ts, temp * 1.8 + 32 AS temp_f, abs(temp - 70) AS off_70,
       CASE WHEN temp > 75 THEN 'hot' WHEN temp > 65 THEN 'warm' ELSE 'ok' END AS level
FROM on_time WHERE temp > 62 AND humidity IS NOT NULL
""",
    },
    {
        "name": "tumble_per_device_and_five_minutes",
        "about": "TUMBLE 5 min per device, grouped by an expression of the key",
        "seed": 6,
        "eddy": """INSERT INTO out
SELECT substr(device_id, 2) AS device_no, window_start, window_end, count(*) AS n,
       avg(humidity) AS avg_hum
FROM TUMBLE(readings, ts, INTERVAL '5' MINUTE)
GROUP BY substr(device_id, 2), window_start, window_end;
""",
        "duckdb": tumble(300_000) + f"""
SELECT substr(device_id, 2) AS device_no, {ts_text('ws')} AS window_start,
       {ts_text('we')} AS window_end, count(*) AS n, avg(humidity) AS avg_hum
FROM windows GROUP BY substr(device_id, 2), ws, we
""",
    },
    {
        "name": "views_union_and_a_window_over_a_view",
        "about": "UNION ALL of two filters of one source in a view, a TUMBLE over it in a second view, read by a filter and by a 1-minute TUMBLE over the view's bucket_end",
        "seed": 7,
        "eddy": """CREATE VIEW hot AS
SELECT device_id, temp, ts FROM readings WHERE temp > 70
UNION ALL
SELECT device_id, humidity AS temp, ts FROM readings WHERE humidity > 60;

CREATE VIEW per_device AS
SELECT device_id, window_start AS bucket_start, window_end AS bucket_end,
       avg(temp) AS avg_temp, count(*) AS n
FROM TUMBLE(hot, ts, INTERVAL '10' SECOND)
GROUP BY device_id, window_start, window_end;

INSERT INTO out
SELECT device_id, bucket_end, avg_temp, n FROM per_device WHERE n >= 3;

INSERT INTO out
SELECT device_id, window_start AS minute, max(avg_temp) AS peak, sum(n) AS readings
FROM TUMBLE(per_device, bucket_end, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start, window_end;
""",
        "duckdb": [
            f"""
, hot AS (
    SELECT device_id, temp, t FROM on_time WHERE temp > 70
    UNION ALL
    SELECT device_id, humidity AS temp, t FROM on_time WHERE humidity > 60
),
per_device AS (
    SELECT device_id, (t // 10000) * 10000 + 10000 AS be, avg(temp) AS avg_temp, count(*) AS n
    FROM hot GROUP BY device_id, t // 10000
)
SELECT device_id, {ts_text('be')} AS bucket_end, avg_temp, n FROM per_device WHERE n >= 3
""",
            f"""
, hot AS (
    SELECT device_id, temp, t FROM on_time WHERE temp > 70
    UNION ALL
    SELECT device_id, humidity AS temp, t FROM on_time WHERE humidity > 60
),
per_device AS (
    SELECT device_id, (t // 10000) * 10000 + 10000 AS be, avg(temp) AS avg_temp, count(*) AS n
    FROM hot GROUP BY device_id, t // 10000
)
SELECT device_id, {ts_text('(be // 60000) * 60000')} AS minute, max(avg_temp) AS peak,
       sum(n) AS readings
FROM per_device GROUP BY device_id, be // 60000
""",
        ],
    },
    {
        "name": "moving_averages_over_rows_and_range",
        "about": "OVER windows per device in event-time order: ROWS 9 PRECEDING and RANGE 1 minute, in a view read by a threshold query",
        "seed": 8,
        "eddy": """CREATE VIEW smoothed AS
SELECT device_id, ts, temp,
       avg(temp) OVER (PARTITION BY device_id ORDER BY ts
                       ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS avg10,
       max(temp) OVER (PARTITION BY device_id ORDER BY ts
                       ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS max10,
       stddev(temp) OVER (PARTITION BY device_id ORDER BY ts
                          ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS sd10,
       sum(humidity) OVER (PARTITION BY device_id ORDER BY ts
                           RANGE BETWEEN INTERVAL '1' MINUTE PRECEDING AND CURRENT ROW) AS hum_1min,
       count(temp) OVER (PARTITION BY device_id ORDER BY ts
                         RANGE BETWEEN INTERVAL '1' MINUTE PRECEDING AND CURRENT ROW) AS n_1min,
       min(temp) OVER (PARTITION BY device_id ORDER BY ts
                       RANGE BETWEEN INTERVAL '30' SECOND PRECEDING AND CURRENT ROW) AS min_30s
FROM readings;

INSERT INTO out
SELECT device_id, ts, temp, avg10, max10, sd10, hum_1min, n_1min, min_30s
FROM smoothed WHERE avg10 > 60;
""",
        "duckdb": f"""
, smoothed AS (
    SELECT device_id, t, temp,
           avg(temp) OVER (PARTITION BY device_id ORDER BY t ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS avg10,
           max(temp) OVER (PARTITION BY device_id ORDER BY t ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS max10,
           stddev_samp(temp) OVER (PARTITION BY device_id ORDER BY t ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS sd10,
           sum(humidity) OVER (PARTITION BY device_id ORDER BY t RANGE BETWEEN 60000 PRECEDING AND CURRENT ROW) AS hum_1min,
           count(temp) OVER (PARTITION BY device_id ORDER BY t RANGE BETWEEN 60000 PRECEDING AND CURRENT ROW) AS n_1min,
           min(temp) OVER (PARTITION BY device_id ORDER BY t RANGE BETWEEN 30000 PRECEDING AND CURRENT ROW) AS min_30s
    FROM on_time
)
SELECT device_id, {ts_text('t')} AS ts, temp, avg10, max10, sd10, hum_1min, n_1min, min_30s
FROM smoothed WHERE avg10 > 60
""",
    },
    {
        "name": "sessions_per_device",
        "about": "SESSION windows per device with a 1.5 s gap: a session ends 1.5 s after its last reading",
        "seed": 9,
        "eddy": """INSERT INTO out
SELECT device_id, window_start, window_end, count(*) AS n, avg(temp) AS avg_temp,
       max(humidity) AS max_hum, count(*) FILTER (WHERE temp > 60) AS warm
FROM SESSION(readings, ts, INTERVAL '1500' MILLISECOND)
GROUP BY device_id, window_start, window_end
HAVING count(*) > 1;
""",
        "duckdb": f"""
, gaps AS (
    SELECT *, CASE WHEN t - lag(t) OVER (PARTITION BY device_id ORDER BY t) < 1500 THEN 0 ELSE 1 END AS starts
    FROM on_time
),
numbered AS (
    SELECT *, sum(starts) OVER (PARTITION BY device_id ORDER BY t ROWS UNBOUNDED PRECEDING) AS session
    FROM gaps
)
SELECT device_id, {ts_text('min(t)')} AS window_start, {ts_text('(max(t) + 1500)')} AS window_end,
       count(*) AS n, avg(temp) AS avg_temp, max(humidity) AS max_hum,
       count(*) FILTER (WHERE temp > 60) AS warm
FROM numbered GROUP BY device_id, session HAVING count(*) > 1
""",
    },
    {
        "name": "late_rows_to_a_late_sink",
        "about": "late_sink: every valid row comes out once, on time through the query or late with the watermark it missed",
        "seed": 10,
        "source_options": ", late_sink = 'out'",
        "eddy": """INSERT INTO out
SELECT device_id, temp, humidity, ts,
       CAST(NULL AS TIMESTAMP) AS late_watermark, CAST(NULL AS TEXT) AS late_reason
FROM readings;
""",
        "duckdb": f"""
SELECT device_id, temp, humidity, {ts_text('t')} AS ts, t,
       CASE WHEN prev_max IS NOT NULL AND t < prev_max - {BOUND_S * 1000}
            THEN {ts_text('(prev_max - ' + str(BOUND_S * 1000) + ')')} END AS late_watermark,
       CASE WHEN prev_max IS NOT NULL AND t < prev_max - {BOUND_S * 1000}
            THEN prev_max - {BOUND_S * 1000} END AS late_watermark_ms
FROM marked
""",
        "post": late_reason,
    },
    {
        "name": "lookup_join_with_per_device_limits",
        "about": "lookup joins with a CSV table: per-device limits (JOIN), and a LEFT JOIN that keeps devices without a limit",
        "seed": 11,
        "files": {"limits.csv": LIMITS_CSV},
        "duckdb_setup": LIMITS_SQL,
        "eddy": """CREATE TABLE limits (device_id TEXT, max_temp DOUBLE, site TEXT)
  WITH (connector = 'file', path = 'limits.csv', refresh = '1 minute');

INSERT INTO out
SELECT r.device_id, r.ts, r.temp, l.max_temp, l.site, r.temp - l.max_temp AS excess
FROM readings r JOIN limits l ON r.device_id = l.device_id
WHERE r.temp > l.max_temp;

INSERT INTO out
SELECT device_id, window_start, max(temp) AS peak, count(*) AS n
FROM TUMBLE(readings, ts, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start, window_end;

INSERT INTO out
SELECT r.device_id, r.ts AS reading_at, coalesce(l.site, 'unknown') AS site_or_unknown
FROM readings r LEFT JOIN limits l ON r.device_id = l.device_id AND l.site <> 'east'
WHERE r.humidity > 68;
""",
        "duckdb": [
            f"""
SELECT o.device_id, {ts_text('o.t')} AS ts, o.temp, l.max_temp, l.site, o.temp - l.max_temp AS excess
FROM on_time o JOIN limits l ON o.device_id = l.device_id
WHERE o.temp > l.max_temp
""",
            tumble(60_000) + f"""
SELECT device_id, {ts_text('ws')} AS window_start, max(temp) AS peak, count(*) AS n
FROM windows GROUP BY device_id, ws
""",
            f"""
SELECT o.device_id, {ts_text('o.t')} AS reading_at, coalesce(l.site, 'unknown') AS site_or_unknown
FROM on_time o LEFT JOIN limits l ON o.device_id = l.device_id AND l.site <> 'east'
WHERE o.humidity > 68
""",
        ],
    },
    {
        "name": "interval_join_of_a_stream_with_itself",
        "about": "interval join: a reading followed within 3 s by one 5 degrees hotter, and those jumps counted per minute through a view",
        "seed": 12,
        "eddy": """CREATE VIEW jumps AS
SELECT a.device_id, a.ts AS from_ts, b.ts AS jump_at, a.temp AS from_temp, b.temp AS to_temp
FROM readings a JOIN readings b
  ON a.device_id = b.device_id
 AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '3' SECOND
 AND b.temp > a.temp + 5;

INSERT INTO out SELECT device_id, from_ts, jump_at, from_temp, to_temp FROM jumps;

INSERT INTO out
SELECT device_id, window_start AS minute, count(*) AS jumps, max(to_temp - from_temp) AS biggest
FROM TUMBLE(jumps, jump_at, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start, window_end;
""",
        "duckdb": [
            f"""
SELECT a.device_id, {ts_text('a.t')} AS from_ts, {ts_text('b.t')} AS jump_at,
       a.temp AS from_temp, b.temp AS to_temp
FROM on_time a JOIN on_time b
  ON a.device_id = b.device_id AND b.t BETWEEN a.t AND a.t + 3000 AND b.temp > a.temp + 5
""",
            f"""
, jumps AS (
    SELECT a.device_id, b.t AS jt, b.temp - a.temp AS jump
    FROM on_time a JOIN on_time b
      ON a.device_id = b.device_id AND b.t BETWEEN a.t AND a.t + 3000 AND b.temp > a.temp + 5
)
SELECT device_id, {ts_text('(jt // 60000) * 60000')} AS minute, count(*) AS jumps, max(jump) AS biggest
FROM jumps GROUP BY device_id, jt // 60000
""",
        ],
    },
]

BAD_LINES = [
    '{"device_id": "d1", "temp": , "ts": "2026-01-01T00:00:05Z"}',
    '{"device_id": "d2", "temp": "hot", "ts": "2026-01-01T00:00:05Z"}',
    '{"device_id": "d3", "temp": 61.0}',
    'not json at all',
    '{"device_id": "d4", "temp": 60.5, "ts": "yesterday"}',
]


def readings(seed):
    """Rows for 5 devices at 1 Hz for 10 minutes, with arrival times: most rows arrive up to 4 s
    late (within the 5 s bound), about 2% arrive 8-40 s late."""
    rng = random.Random(seed)
    rows = []
    for d in range(5):
        base = 50 + 5 * d
        hot_from = rng.randrange(0, 500)
        for s in range(600):
            t = EPOCH + timedelta(seconds=s, milliseconds=rng.randrange(0, 1000))
            temp = base + 8 * rng.random() + (20 if hot_from <= s < hot_from + 60 else 0)
            row = {
                "device_id": f"d{d}",
                "temp": round(temp, 2) if rng.random() > 0.01 else None,
                "humidity": round(30 + 40 * rng.random(), 1) if rng.random() > 0.01 else None,
                "t": t,
            }
            delay = rng.uniform(0, 4) if rng.random() > 0.02 else rng.uniform(8, 40)
            row["arrival"] = t + timedelta(seconds=delay)
            rows.append(row)
    rows.sort(key=lambda r: (r["arrival"], r["device_id"]))
    return rng, rows


def encode(rng, row):
    t = row["t"]
    kind = rng.random()
    if kind < 0.6:
        ts = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    elif kind < 0.8:
        local = t.astimezone(timezone(timedelta(hours=2)))
        ts = local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+02:00"
    else:
        ts = int(t.timestamp() * 1000)
    out = {"device_id": row["device_id"], "temp": row["temp"], "ts": ts}
    if row["humidity"] is not None or rng.random() < 0.5:
        out["humidity"] = row["humidity"]
    return json.dumps(out)


def main():
    shutil.rmtree(ROOT, ignore_errors=True)
    for case in CASES:
        folder = os.path.join(ROOT, case["name"])
        os.makedirs(folder)
        rng, rows = readings(case["seed"])
        lines = [encode(rng, r) for r in rows]
        for bad in BAD_LINES:
            lines.insert(rng.randrange(len(lines)), bad)
        with open(os.path.join(folder, "input.jsonl"), "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(folder, "query.sql"), "w") as f:
            f.write(f"-- {case['about']}\n-- Generated by tests/oracle/generate.py; expected.jsonl is DuckDB's answer.\n")
            f.write(SOURCE.format(bound=BOUND_S, extra=case.get("source_options", "")))
            f.write("\n" + case["eddy"])
        for name, text in case.get("files", {}).items():
            with open(os.path.join(folder, name), "w") as f:
                f.write(text)
        con = duckdb.connect()
        if "duckdb_setup" in case:
            con.execute(case["duckdb_setup"])
        con.execute("CREATE TABLE rows (seq BIGINT, device_id TEXT, temp DOUBLE, humidity DOUBLE, ts TIMESTAMP)")
        con.executemany(
            "INSERT INTO rows VALUES (?, ?, ?, ?, ?)",
            [(i, r["device_id"], r["temp"], r["humidity"], r["t"].replace(tzinfo=None)) for i, r in enumerate(rows)],
        )
        queries = case["duckdb"] if isinstance(case["duckdb"], list) else [case["duckdb"]]
        out = []
        for query in queries:
            result = con.execute(ON_TIME.format(bound_ms=BOUND_S * 1000) + query)
            names = [d[0] for d in result.description]
            out += [dict(zip(names, row)) for row in result.fetchall()]
        if "post" in case:
            out = [case["post"](r) for r in out]
        out.sort(key=lambda r: json.dumps(r, sort_keys=True, default=str))
        with open(os.path.join(folder, "expected.jsonl"), "w") as f:
            for r in out:
                f.write(json.dumps(r) + "\n")
        print(f"{case['name']}: {len(rows)} rows, {len(out)} expected results")


if __name__ == "__main__":
    main()
