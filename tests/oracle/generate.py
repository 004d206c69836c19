#!/usr/bin/env python3
"""Regenerates the window test cases in tests/cases/.

    pip install duckdb && python3 tests/oracle/generate.py    # Python 3.11 or later

Each case is a folder of tests/cases:

- query.sql: what Eddy runs, a file source reading input.jsonl and a file sink writing to $OUT;
- input.jsonl: the lines in arrival order: out of order within the watermark bound, some late
  rows, some null temperatures, timestamps as RFC 3339 strings with and without offsets and as
  epoch milliseconds, and a few lines that are not valid readings;
- oracle.sql: the DuckDB statements that compute the same answer as a batch query, written by
  hand; each states the lateness rule of the design (a row is late, and dropped, when its time is
  older than the largest time among the rows before it minus the watermark bound), the rest is a
  plain GROUP BY, join or window function, which is what a continuous query must equal once its
  input has ended;
- expected.jsonl: what oracle.sql answers, sorted. It is left as it is when a new answer differs
  only in float rounding: DuckDB's parallel sums vary in the last digit from run to run.

This script does two things. It writes input.jsonl, query.sql and any extra file (limits.csv) of
every case in CASES, from a seeded generator of readings. Then, for every folder that has an
oracle.sql, it loads the valid lines of input.jsonl into a DuckDB table
rows (seq, device_id, temp, humidity, ts), seq the arrival position, runs oracle.sql's statements
in that folder and writes the rows of its SELECTs to expected.jsonl. A case is added by adding a
folder with query.sql, input.jsonl and oracle.sql, or with oracle.sql only and an entry in CASES
that generates the other two.
"""

import json
import math
import os
import random
from datetime import datetime, timedelta, timezone

import duckdb

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cases")
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
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

# Per-device limits for the lookup-join case: d4 has none; d3's site is excluded by the LEFT JOIN.
LIMITS = [("d0", 54.0, "north"), ("d1", 62.5, "north"), ("d2", 70.0, "south"), ("d3", 66.0, "east")]
LIMITS_CSV = "device_id,site,max_temp\n" + "".join(f"{d},{s},{m}\n" for d, m, s in LIMITS)

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
    },
    {
        "name": "lookup_join_with_per_device_limits",
        "about": "lookup joins with a CSV table: per-device limits (JOIN), and a LEFT JOIN that keeps devices without a limit",
        "seed": 11,
        "files": {"limits.csv": LIMITS_CSV},
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
    },
    {
        "name": "interval_outer_joins",
        "about": "LEFT and FULL interval joins: each reading with the 5-degree jumps 1-3 s after it or alone, counted per minute through a view; hot readings and humid ones of a device within 2 s of each other, or either alone",
        "seed": 14,
        "eddy": """CREATE VIEW followed AS
SELECT a.device_id, a.ts AS at, b.ts AS jump_at, b.temp - a.temp AS rise
FROM readings a LEFT JOIN readings b
  ON a.device_id = b.device_id
 AND b.ts BETWEEN a.ts + INTERVAL '1' SECOND AND a.ts + INTERVAL '3' SECOND
 AND b.temp > a.temp + 5;

INSERT INTO out SELECT device_id, at, jump_at, rise FROM followed;

INSERT INTO out
SELECT device_id, window_start AS minute, count(*) AS readings, count(jump_at) AS followed_by_a_jump
FROM TUMBLE(followed, at, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start, window_end;

INSERT INTO out
SELECT a.device_id AS hot_device, a.ts AS hot_at, b.device_id AS humid_device, b.ts AS humid_at
FROM (SELECT * FROM readings WHERE temp > 75) a
FULL JOIN (SELECT * FROM readings WHERE humidity > 68) b
  ON a.device_id = b.device_id
 AND b.ts BETWEEN a.ts - INTERVAL '2' SECOND AND a.ts + INTERVAL '2' SECOND;
""",
    },
    {
        "name": "over_frames_reaching_ahead",
        "about": "OVER frames that end after the current row: LEAD, centred ROWS and RANGE frames, and a view of the change to the next reading windowed by minute; LAG, FIRST_VALUE and LAST_VALUE IGNORE NULLS; frames ending before the current row and EXCLUDE CURRENT ROW",
        "seed": 15,
        "eddy": """INSERT INTO out
SELECT device_id, ts, temp,
       LEAD(temp) OVER (PARTITION BY device_id ORDER BY ts) AS next_temp,
       LEAD(temp, 2, -1.0) OVER (PARTITION BY device_id ORDER BY ts) AS temp_2_after,
       avg(temp) OVER (PARTITION BY device_id ORDER BY ts
                       ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING) AS centred_5,
       max(temp) OVER (PARTITION BY device_id ORDER BY ts
                       RANGE BETWEEN INTERVAL '10' SECOND PRECEDING
                       AND INTERVAL '5' SECOND FOLLOWING) AS max_around,
       count(*) OVER (PARTITION BY device_id ORDER BY ts
                      ROWS BETWEEN CURRENT ROW AND 3 FOLLOWING) AS this_and_next_3,
       sum(humidity) OVER (PARTITION BY device_id ORDER BY ts
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 FOLLOWING) AS running_and_next,
       LAG(temp) OVER (PARTITION BY device_id ORDER BY ts) AS prev_temp
FROM readings;

INSERT INTO out
SELECT device_id, ts,
       LAG(temp) IGNORE NULLS OVER (PARTITION BY device_id ORDER BY ts) AS prev_known_temp,
       LAG(humidity, 2, -1.0) IGNORE NULLS OVER (PARTITION BY device_id ORDER BY ts)
         AS humidity_2_known_before,
       LAST_VALUE(temp) IGNORE NULLS OVER (PARTITION BY device_id ORDER BY ts
                                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
         AS last_known_temp,
       FIRST_VALUE(humidity) IGNORE NULLS OVER (PARTITION BY device_id ORDER BY ts)
         AS first_known_humidity
FROM readings;

INSERT INTO out
SELECT device_id, ts, temp,
       avg(temp) OVER (PARTITION BY device_id ORDER BY ts
                       ROWS BETWEEN 10 PRECEDING AND 1 PRECEDING) AS avg_of_previous_10,
       max(temp) OVER (PARTITION BY device_id ORDER BY ts
                       ROWS BETWEEN 3 PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW) AS max_of_previous_3,
       count(temp) OVER (PARTITION BY device_id ORDER BY ts
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 2 PRECEDING) AS known_until_2_before,
       LAST_VALUE(temp) OVER (PARTITION BY device_id ORDER BY ts
                              ROWS BETWEEN 5 PRECEDING AND 1 PRECEDING) AS previous_temp
FROM readings;

CREATE VIEW changes AS
SELECT device_id, ts, LEAD(temp) OVER (PARTITION BY device_id ORDER BY ts) - temp AS change
FROM readings;

INSERT INTO out
SELECT device_id, window_start AS minute, count(*) AS readings, min(change) AS biggest_drop
FROM TUMBLE(changes, ts, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start, window_end;
""",
    },
    {
        "name": "lag_and_ranks_over_event_time",
        "about": "LAG, ROW_NUMBER, RANK, DENSE_RANK, FIRST_VALUE, LAST_VALUE and aggregates with FILTER per device in event-time order, and the rise since a device's last reading through a view",
        "seed": 13,
        "eddy": """INSERT INTO out
SELECT device_id, ts, temp,
       LAG(temp) OVER (PARTITION BY device_id ORDER BY ts) AS prev_temp,
       LAG(temp, 2, -1.0) OVER (PARTITION BY device_id ORDER BY ts) AS temp_2_before,
       ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY ts) AS n,
       RANK() OVER (PARTITION BY device_id ORDER BY ts) AS r,
       DENSE_RANK() OVER (PARTITION BY device_id ORDER BY ts) AS dr,
       FIRST_VALUE(temp) OVER (PARTITION BY device_id ORDER BY ts
                               ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS first_of_4,
       FIRST_VALUE(humidity) OVER (PARTITION BY device_id ORDER BY ts) AS first_humidity,
       LAST_VALUE(temp) OVER (PARTITION BY device_id ORDER BY ts
                              ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS last_temp,
       count(*) FILTER (WHERE temp > 55) OVER (PARTITION BY device_id ORDER BY ts
                                               ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS warm_of_10,
       avg(temp) FILTER (WHERE humidity > 40) OVER (PARTITION BY device_id ORDER BY ts
                                                    RANGE BETWEEN INTERVAL '1' MINUTE PRECEDING
                                                    AND CURRENT ROW) AS avg_humid_1min
FROM readings;

CREATE VIEW rises AS
SELECT device_id, ts, temp - LAG(temp) OVER (PARTITION BY device_id ORDER BY ts) AS rise
FROM readings;

INSERT INTO out SELECT device_id, ts AS rose_at, rise FROM rises WHERE rise > 5;
""",
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


def write_case(case):
    """Writes a case's input.jsonl, query.sql and extra files; oracle.sql is left as it is."""
    folder = os.path.join(ROOT, case["name"])
    os.makedirs(folder, exist_ok=True)
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


def is_number(value):
    # JSON true and false load as bool, which Python counts as int.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def arrived_readings(path):
    """The valid readings of an input.jsonl as (seq, device_id, temp, humidity, ts) in arrival
    order: JSON objects whose ts is RFC 3339 text or epoch milliseconds and whose temp and
    humidity are numbers, null or missing. Eddy skips every other line as a bad line."""
    rows = []
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(r, dict):
                continue
            temp, humidity, ts = r.get("temp"), r.get("humidity"), r.get("ts")
            if not all(v is None or is_number(v) for v in (temp, humidity)):
                continue
            if is_number(ts) and isinstance(ts, int):
                t = UNIX_EPOCH + timedelta(milliseconds=ts)
            elif isinstance(ts, str):
                try:
                    t = datetime.fromisoformat(ts)
                except ValueError:
                    continue
                # A time without an offset is UTC, as in Eddy.
                t = t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t
            else:
                continue
            utc = t.astimezone(timezone.utc).replace(tzinfo=None)
            rows.append((len(rows), r.get("device_id"), temp, humidity, utc))
    return rows


def oracle_answer(folder, rows):
    """The rows of every SELECT of the folder's oracle.sql run over `rows`, sorted."""
    con = duckdb.connect()
    # oracle.sql reads files such as limits.csv by their name in the case folder.
    con.execute(f"SET file_search_path = '{folder}'")
    con.execute(
        "CREATE TABLE rows (seq BIGINT, device_id TEXT, temp DOUBLE, humidity DOUBLE, ts TIMESTAMP)"
    )
    con.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?)", rows)
    with open(os.path.join(folder, "oracle.sql")) as f:
        script = f.read()
    out = []
    for statement in con.extract_statements(script):
        result = con.execute(statement)
        if statement.type == duckdb.StatementType.SELECT:
            names = [d[0] for d in result.description]
            out += [dict(zip(names, row)) for row in result.fetchall()]
    out.sort(key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return out


def same_up_to_rounding(a, b):
    """Whether two lists of rows are equal, floats within 1e-12 relative."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if list(x) != list(y):
            return False
        for k in x:
            u, v = x[k], y[k]
            if isinstance(u, float) and isinstance(v, float):
                if not math.isclose(u, v, rel_tol=1e-12, abs_tol=1e-12):
                    return False
            elif type(u) is not type(v) or u != v:
                return False
    return True


def write_expected(folder, answer):
    """Writes expected.jsonl unless it already holds this answer up to float rounding: DuckDB's
    parallel sums vary in the last digit from run to run, and a regeneration should show only
    real changes. Returns whether the file was written."""
    path = os.path.join(folder, "expected.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            current = [json.loads(line) for line in f if line.strip()]
        if same_up_to_rounding(current, json.loads(json.dumps(answer))):
            return False
    with open(path, "w") as f:
        for r in answer:
            f.write(json.dumps(r) + "\n")
    return True


def main():
    for case in CASES:
        write_case(case)
    for name in sorted(os.listdir(ROOT)):
        folder = os.path.join(ROOT, name)
        if not os.path.exists(os.path.join(folder, "oracle.sql")):
            continue
        rows = arrived_readings(os.path.join(folder, "input.jsonl"))
        answer = oracle_answer(folder, rows)
        written = write_expected(folder, answer)
        note = "" if written else " (unchanged)"
        print(f"{name}: {len(rows)} rows, {len(answer)} expected results{note}")


if __name__ == "__main__":
    main()
