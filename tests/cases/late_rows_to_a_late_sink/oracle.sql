-- late_sink: every valid row comes out once, on time through the query or late with the watermark it missed
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

-- A duration as Eddy shows it: 1min5s, 12s250ms.
CREATE MACRO show_duration(ms) AS
    CASE WHEN ms = 0 THEN '0s' ELSE concat(
        CASE WHEN ms >= 86400000 THEN concat(ms // 86400000, 'd') END,
        CASE WHEN ms % 86400000 >= 3600000 THEN concat(ms % 86400000 // 3600000, 'h') END,
        CASE WHEN ms % 3600000 >= 60000 THEN concat(ms % 3600000 // 60000, 'min') END,
        CASE WHEN ms % 60000 >= 1000 THEN concat(ms % 60000 // 1000, 's') END,
        CASE WHEN ms % 1000 > 0 THEN concat(ms % 1000, 'ms') END) END;

-- late_watermark_ms: the watermark a late row missed, NULL for a row on time.
WITH judged AS (
    SELECT *,
           CASE WHEN prev_max IS NOT NULL AND t < prev_max - 5000 THEN prev_max - 5000 END
               AS late_watermark_ms
    FROM marked
)
SELECT device_id, temp, humidity, ts_text(t) AS ts, ts_text(late_watermark_ms) AS late_watermark,
       CASE WHEN late_watermark_ms IS NOT NULL
            THEN 'ts is ' || show_duration(late_watermark_ms - t)
                 || ' behind the watermark (the newest ts seen minus the 5s bound)'
       END AS late_reason
FROM judged;
