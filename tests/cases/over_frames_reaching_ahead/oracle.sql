-- OVER frames that end after the current row or before it, and LAG, FIRST_VALUE and LAST_VALUE
-- IGNORE NULLS.
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
       LEAD(temp) OVER (PARTITION BY device_id ORDER BY t) AS next_temp,
       LEAD(temp, 2, -1.0) OVER (PARTITION BY device_id ORDER BY t) AS temp_2_after,
       avg(temp) OVER (PARTITION BY device_id ORDER BY t
                       ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING) AS centred_5,
       max(temp) OVER (PARTITION BY device_id ORDER BY t
                       RANGE BETWEEN 10000 PRECEDING AND 5000 FOLLOWING) AS max_around,
       count(*) OVER (PARTITION BY device_id ORDER BY t
                      ROWS BETWEEN CURRENT ROW AND 3 FOLLOWING) AS this_and_next_3,
       sum(humidity) OVER (PARTITION BY device_id ORDER BY t
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 FOLLOWING) AS running_and_next,
       LAG(temp) OVER (PARTITION BY device_id ORDER BY t) AS prev_temp
FROM on_time;

SELECT device_id, ts_text(t) AS ts,
       lag(temp IGNORE NULLS) OVER (PARTITION BY device_id ORDER BY t) AS prev_known_temp,
       lag(humidity, 2, -1.0 IGNORE NULLS) OVER (PARTITION BY device_id ORDER BY t)
         AS humidity_2_known_before,
       last_value(temp IGNORE NULLS) OVER (PARTITION BY device_id ORDER BY t
                                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
         AS last_known_temp,
       first_value(humidity IGNORE NULLS) OVER (PARTITION BY device_id ORDER BY t)
         AS first_known_humidity
FROM on_time;

SELECT device_id, ts_text(t) AS ts, temp,
       avg(temp) OVER (PARTITION BY device_id ORDER BY t
                       ROWS BETWEEN 10 PRECEDING AND 1 PRECEDING) AS avg_of_previous_10,
       max(temp) OVER (PARTITION BY device_id ORDER BY t
                       ROWS BETWEEN 3 PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW) AS max_of_previous_3,
       count(temp) OVER (PARTITION BY device_id ORDER BY t
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 2 PRECEDING) AS known_until_2_before,
       last_value(temp) OVER (PARTITION BY device_id ORDER BY t
                              ROWS BETWEEN 5 PRECEDING AND 1 PRECEDING) AS previous_temp
FROM on_time;

CREATE VIEW changes AS
SELECT device_id, t, LEAD(temp) OVER (PARTITION BY device_id ORDER BY t) - temp AS change
FROM on_time;

SELECT device_id, ts_text((t // 60000) * 60000) AS minute, count(*) AS readings,
       min(change) AS biggest_drop
FROM changes GROUP BY device_id, t // 60000;
