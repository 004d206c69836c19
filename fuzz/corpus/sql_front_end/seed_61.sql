CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, window_end, max(temp) AS max_temp
FROM TUMBLE(readings, ts, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start, window_end;

-- expect: 7:23: TUMBLE needs event time, but source 'readings' declares no WATERMARK; add `WATERMARK FOR ts AS ts - INTERVAL '2' SECOND` to its columns
