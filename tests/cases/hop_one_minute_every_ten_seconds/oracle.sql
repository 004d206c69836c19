-- HOP 1 min sliding 10 s per device, computed from panes
-- DuckDB's answer to query.sql: tests/oracle/generate.py runs these statements in this folder
-- over a table rows (seq, device_id, temp, humidity, ts), the valid readings of input.jsonl with
-- their arrival position seq, and writes the rows of every SELECT to expected.jsonl.

-- Eddy drops late rows: a row is late when its ts is older than the largest ts among the rows
-- that arrived before it minus the 5 s watermark bound.
CREATE VIEW marked AS
SELECT *, max(t) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_max
FROM (SELECT seq, device_id, temp, humidity, ts, epoch_ms(ts) AS t FROM rows);

CREATE VIEW on_time AS
SELECT * FROM marked WHERE prev_max IS NULL OR t >= prev_max - 5000;

-- Eddy writes times as RFC 3339 in UTC with milliseconds.
CREATE MACRO ts_text(ms) AS strftime(make_timestamp(ms * 1000), '%Y-%m-%dT%H:%M:%S.%gZ');

-- A row belongs to every window [s, s + 1 min) with s a multiple of 10 s and s <= t < s + 1 min.
WITH windows AS (
    SELECT o.*, s AS ws, s + 60000 AS we
    FROM on_time o,
         LATERAL (SELECT unnest(range(((o.t - 60000) // 10000 + 1) * 10000,
                                      (o.t // 10000) * 10000 + 1, 10000)) AS s)
)
SELECT device_id, ts_text(ws) AS window_start, ts_text(we) AS window_end,
       avg(temp) AS avg_temp, max(temp) AS max_temp, count(*) AS n
FROM windows GROUP BY device_id, ws, we HAVING avg(temp) > 55;
