CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

CREATE VIEW per_minute AS
SELECT device_id, window_start, window_end, avg(temp) AS avg_temp
FROM TUMBLE(readings, ts, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start, window_end;

INSERT INTO alerts
SELECT device_id, window_start, max(avg_temp) AS peak
FROM TUMBLE(per_minute, window_end, INTERVAL '1' HOUR)
GROUP BY device_id, window_start, window_end;

-- expect: 13:13: TUMBLE adds the columns window_start, window_end and window_time, but view 'per_minute' has a column 'window_start' already; rename it in the view (`window_start AS ...`)
