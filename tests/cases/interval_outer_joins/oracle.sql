-- LEFT and FULL interval joins.
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

-- Every reading, with each jump 1-3 s after it or, without one, alone (NULLs).
CREATE VIEW followed AS
SELECT a.device_id, a.t AS at_t, b.t AS jump_t, b.temp - a.temp AS rise
FROM on_time a LEFT JOIN on_time b
  ON a.device_id = b.device_id AND b.t BETWEEN a.t + 1000 AND a.t + 3000 AND b.temp > a.temp + 5;

SELECT device_id, ts_text(at_t) AS at, ts_text(jump_t) AS jump_at, rise FROM followed;

SELECT device_id, ts_text((at_t // 60000) * 60000) AS minute, count(*) AS readings,
       count(jump_t) AS followed_by_a_jump
FROM followed GROUP BY device_id, at_t // 60000;

SELECT a.device_id AS hot_device, ts_text(a.t) AS hot_at, b.device_id AS humid_device,
       ts_text(b.t) AS humid_at
FROM (SELECT * FROM on_time WHERE temp > 75) a
FULL JOIN (SELECT * FROM on_time WHERE humidity > 68) b
  ON a.device_id = b.device_id AND b.t BETWEEN a.t - 2000 AND a.t + 2000;
