-- LAG, ROW_NUMBER, RANK, DENSE_RANK, FIRST_VALUE, LAST_VALUE and aggregates with FILTER per device in event-time order, and the rise since a device's last reading through a view
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

SELECT device_id, ts_text(t) AS ts, temp,
       lag(temp) OVER by_time AS prev_temp,
       lag(temp, 2, -1.0) OVER by_time AS temp_2_before,
       row_number() OVER by_time AS n,
       rank() OVER by_time AS r,
       dense_rank() OVER by_time AS dr,
       first_value(temp) OVER last_4 AS first_of_4,
       first_value(humidity) OVER (PARTITION BY device_id ORDER BY t
                                   RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
           AS first_humidity,
       last_value(temp) OVER last_4 AS last_temp,
       count(*) FILTER (WHERE temp > 55) OVER (PARTITION BY device_id ORDER BY t
                                               ROWS BETWEEN 9 PRECEDING AND CURRENT ROW)
           AS warm_of_10,
       avg(temp) FILTER (WHERE humidity > 40) OVER (PARTITION BY device_id ORDER BY t
                                                    RANGE BETWEEN 60000 PRECEDING AND CURRENT ROW)
           AS avg_humid_1min
FROM on_time
WINDOW by_time AS (PARTITION BY device_id ORDER BY t),
       last_4 AS (PARTITION BY device_id ORDER BY t ROWS BETWEEN 3 PRECEDING AND CURRENT ROW);

SELECT device_id, ts_text(t) AS rose_at, rise
FROM (SELECT device_id, t, temp - lag(temp) OVER (PARTITION BY device_id ORDER BY t) AS rise
      FROM on_time)
WHERE rise > 5;
