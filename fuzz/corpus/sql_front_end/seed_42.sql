CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, temp - lag(temp) OVER (PARTITION BY device_id ORDER BY ts) AS step
FROM readings;

-- expect: 7:26: lag OVER (...) is not supported in a continuous query; aggregates (avg, sum, count, min, max, stddev, ...) are
