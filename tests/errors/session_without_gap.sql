CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, window_start, window_end, count(*) AS n
FROM SESSION(readings, ts)
GROUP BY device_id, window_start, window_end;

-- expect: 8:6: missing argument 'gap'; expected SESSION(source, time_column, INTERVAL '5' MINUTE) (the gap), or Flink's SESSION(TABLE source [PARTITION BY key], DESCRIPTOR(time_column), gap)
