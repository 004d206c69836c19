-- lookup joins with a CSV table: per-device limits (JOIN), and a LEFT JOIN that keeps devices without a limit
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

-- The reference table query.sql declares, read from the same file.
CREATE TABLE limits AS
SELECT * FROM read_csv('limits.csv', header = true,
                       columns = {'device_id': 'TEXT', 'site': 'TEXT', 'max_temp': 'DOUBLE'});

SELECT o.device_id, ts_text(o.t) AS ts, o.temp, l.max_temp, l.site, o.temp - l.max_temp AS excess
FROM on_time o JOIN limits l ON o.device_id = l.device_id
WHERE o.temp > l.max_temp;

SELECT device_id, ts_text((t // 60000) * 60000) AS window_start, max(temp) AS peak, count(*) AS n
FROM on_time GROUP BY device_id, t // 60000;

SELECT o.device_id, ts_text(o.t) AS reading_at, coalesce(l.site, 'unknown') AS site_or_unknown
FROM on_time o LEFT JOIN limits l ON o.device_id = l.device_id AND l.site <> 'east'
WHERE o.humidity > 68;
