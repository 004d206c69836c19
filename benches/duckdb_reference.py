#!/usr/bin/env python3
"""DuckDB's batch answer to the end-to-end benchmark queries, timed: the reference a vectorized
engine reaches on this machine. The end-to-end harness (benches/src/bin/e2e.rs) runs it on the
same JSON-lines file it replays through `eddy run` and prints the ratio.

    python3 benches/duckdb_reference.py READINGS.jsonl [--threads N]

Prints one JSON object: for each query, the seconds DuckDB took (reading and parsing the file
included, as Eddy's time includes it) and the number of rows it returned.
"""

import argparse
import json
import time

import duckdb

READ = """read_json('{path}', format = 'newline_delimited',
    columns = {{device_id: 'VARCHAR', temp: 'DOUBLE', ts: 'TIMESTAMPTZ'}})"""

QUERIES = {
    "tumble 10s": """
        SELECT device_id, time_bucket(INTERVAL 10 SECOND, ts) AS window_start,
               avg(temp) AS avg_temp, max(temp) AS max_temp, count(*) AS readings
        FROM {read}
        GROUP BY ALL
        HAVING avg(temp) > 75
    """,
    # Every 1-minute window starting at a multiple of 10 seconds that holds the reading.
    "hop 1min/10s": """
        WITH r AS (SELECT device_id, temp, epoch_ms(ts) AS t FROM {read})
        SELECT device_id, s AS window_start,
               avg(temp) AS avg_temp, max(temp) AS max_temp, count(*) AS readings
        FROM r, LATERAL (SELECT unnest(range(((r.t - 60000) // 10000 + 1) * 10000,
                                             (r.t // 10000) * 10000 + 1, 10000)) AS s)
        GROUP BY ALL
        HAVING avg(temp) > 75
    """,
    "over 10 rows": """
        WITH smoothed AS (
            SELECT device_id, ts,
                   avg(temp) OVER (PARTITION BY device_id ORDER BY ts
                                   ROWS BETWEEN 9 PRECEDING AND CURRENT ROW) AS avg10
            FROM {read}
        )
        SELECT device_id, ts, avg10 FROM smoothed WHERE avg10 > 82.0005
    """,
    # Readings exactly 1.5 s apart are one session, as in Flink and Eddy.
    "session 1.5s": """
        WITH r AS (SELECT device_id, temp, epoch_ms(ts) AS t FROM {read}),
        gaps AS (
            SELECT *, CASE WHEN t - lag(t) OVER (PARTITION BY device_id ORDER BY t) <= 1500
                           THEN 0 ELSE 1 END AS starts
            FROM r
        ),
        numbered AS (
            SELECT *, sum(starts) OVER (PARTITION BY device_id ORDER BY t
                                        ROWS UNBOUNDED PRECEDING) AS session
            FROM gaps
        )
        SELECT device_id, min(t), max(t) + 1500, count(*) AS readings, max(temp)
        FROM numbered GROUP BY device_id, session HAVING count(*) > 3
    """,
    # Every window of the minute that holds the reading: it ends at each 10 s step after it.
    "cumulate 10s/1min": """
        WITH r AS (SELECT device_id, temp, epoch_ms(ts) AS t,
                          (epoch_ms(ts) // 60000) * 60000 AS s FROM {read})
        SELECT device_id, s AS window_start, e AS window_end,
               avg(temp) AS avg_temp, max(temp) AS max_temp, count(*) AS readings
        FROM r, LATERAL (SELECT unnest(range(r.s + ((r.t - r.s) // 10000 + 1) * 10000,
                                             r.s + 60000 + 1, 10000)) AS e)
        GROUP BY ALL
        HAVING avg(temp) > 75
    """,
    "window top-3": """
        WITH w AS (
            SELECT time_bucket(INTERVAL 10 SECOND, ts) AS window_start, device_id,
                   avg(temp) AS avg_temp
            FROM {read} GROUP BY ALL
        )
        SELECT * FROM (
            SELECT *, row_number() OVER (PARTITION BY window_start ORDER BY avg_temp DESC) AS n
            FROM w
        ) WHERE n <= 3
    """,
    "window join": """
        WITH r AS (SELECT device_id, temp, time_bucket(INTERVAL 10 SECOND, ts) AS w FROM {read}),
        a AS (SELECT device_id, w, avg(temp) AS avg_temp FROM r GROUP BY ALL),
        h AS (SELECT device_id, w, count(*) AS hot FROM r WHERE temp > 80 GROUP BY ALL)
        SELECT a.device_id, a.w, a.avg_temp, h.hot FROM a JOIN h USING (device_id, w)
    """,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    con.execute("SET TimeZone = 'UTC'")
    read = READ.format(path=args.path.replace("'", "''"))
    result = {}
    for name, sql in QUERIES.items():
        started = time.perf_counter()
        rows = con.execute(sql.format(read=read)).fetchall()
        result[name] = {"seconds": time.perf_counter() - started, "rows": len(rows)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
