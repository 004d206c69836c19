-- TUMBLE 1 min over all devices, WHERE, CASE, expressions, FILTER, Flink spelling
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

WITH windows AS (
    SELECT *, (t // 60000) * 60000 AS ws, (t // 60000) * 60000 + 60000 AS we FROM on_time
)
SELECT ts_text(ws) AS window_start, ts_text(we) AS window_end,
       count(*) FILTER (WHERE temp > 65) AS hot, count(*) AS n,
       avg(temp * 1.8 + 32) AS avg_f,
       max(CASE WHEN humidity > 50 THEN temp ELSE NULL END) AS max_humid_temp
FROM windows WHERE device_id <> 'd3' GROUP BY ws, we;
