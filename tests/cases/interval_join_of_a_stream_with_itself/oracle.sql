-- interval join: a reading followed within 3 s by one 5 degrees hotter, and those jumps counted per minute through a view
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

CREATE VIEW jumps AS
SELECT a.device_id, a.t AS from_t, b.t AS jump_t, a.temp AS from_temp, b.temp AS to_temp
FROM on_time a JOIN on_time b
  ON a.device_id = b.device_id AND b.t BETWEEN a.t AND a.t + 3000 AND b.temp > a.temp + 5;

SELECT device_id, ts_text(from_t) AS from_ts, ts_text(jump_t) AS jump_at, from_temp, to_temp
FROM jumps;

SELECT device_id, ts_text((jump_t // 60000) * 60000) AS minute, count(*) AS jumps,
       max(to_temp - from_temp) AS biggest
FROM jumps GROUP BY device_id, jump_t // 60000;
