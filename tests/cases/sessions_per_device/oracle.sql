-- SESSION windows per device with a 1.5 s gap: a session ends 1.5 s after its last reading
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

-- A reading starts a session when the device's previous one is more than 1.5 s before it (two
-- readings exactly 1.5 s apart are one session, as in Flink).
WITH gaps AS (
    SELECT *,
           CASE WHEN t - lag(t) OVER (PARTITION BY device_id ORDER BY t) <= 1500 THEN 0 ELSE 1 END
               AS starts
    FROM on_time
),
numbered AS (
    SELECT *,
           sum(starts) OVER (PARTITION BY device_id ORDER BY t ROWS UNBOUNDED PRECEDING) AS session
    FROM gaps
)
SELECT device_id, ts_text(min(t)) AS window_start, ts_text(max(t) + 1500) AS window_end,
       count(*) AS n, avg(temp) AS avg_temp, max(humidity) AS max_hum,
       count(*) FILTER (WHERE temp > 60) AS warm
FROM numbered GROUP BY device_id, session HAVING count(*) > 1;
