CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, LEAD(temp) IGNORE NULLS OVER (PARTITION BY device_id ORDER BY ts) AS next_known
FROM readings;

-- expect: 7:19: lead(...) IGNORE NULLS is not supported; LAG, FIRST_VALUE and LAST_VALUE take it
