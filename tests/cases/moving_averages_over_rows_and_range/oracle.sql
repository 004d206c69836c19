-- OVER windows per device in event-time order: ROWS 9 PRECEDING and RANGE 1 minute, in a view read by a threshold query
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

CREATE VIEW smoothed AS
SELECT device_id, t, temp,
       avg(temp) OVER last_10 AS avg10,
       max(temp) OVER last_10 AS max10,
       stddev_samp(temp) OVER last_10 AS sd10,
       sum(humidity) OVER last_minute AS hum_1min,
       count(temp) OVER last_minute AS n_1min,
       min(temp) OVER last_30s AS min_30s
FROM on_time
WINDOW last_10 AS (PARTITION BY device_id ORDER BY t ROWS BETWEEN 9 PRECEDING AND CURRENT ROW),
       last_minute AS (PARTITION BY device_id ORDER BY t
                       RANGE BETWEEN 60000 PRECEDING AND CURRENT ROW),
       last_30s AS (PARTITION BY device_id ORDER BY t
                    RANGE BETWEEN 30000 PRECEDING AND CURRENT ROW);

SELECT device_id, ts_text(t) AS ts, temp, avg10, max10, sd10, hum_1min, n_1min, min_30s
FROM smoothed WHERE avg10 > 60;
