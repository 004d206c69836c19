CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, window_start, approx_distinct(temp) AS distinct_temps
FROM TUMBLE(readings, ts, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start, window_end;

-- expect: 7:33: approx_distinct(readings.temp): Support for 'approx_distinct' for data type Float64 is not implemented
