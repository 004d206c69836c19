-- UNION ALL of two filters of one source in a view, a TUMBLE over it in a second view, read by a filter and by a 1-minute TUMBLE over the view's bucket_end
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

CREATE VIEW hot AS
SELECT device_id, temp, t FROM on_time WHERE temp > 70
UNION ALL
SELECT device_id, humidity AS temp, t FROM on_time WHERE humidity > 60;

-- be: the end of the 10 s bucket.
CREATE VIEW per_device AS
SELECT device_id, (t // 10000) * 10000 + 10000 AS be, avg(temp) AS avg_temp, count(*) AS n
FROM hot GROUP BY device_id, t // 10000;

SELECT device_id, ts_text(be) AS bucket_end, avg_temp, n FROM per_device WHERE n >= 3;

SELECT device_id, ts_text((be // 60000) * 60000) AS minute, max(avg_temp) AS peak,
       sum(n) AS readings
FROM per_device GROUP BY device_id, be // 60000;
