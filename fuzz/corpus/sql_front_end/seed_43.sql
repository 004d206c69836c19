CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, avg(temp) OVER (PARTITION BY device_id ORDER BY temp ROWS 9 PRECEDING) AS a
FROM readings;

-- expect: 7:19: OVER (...) must be ORDER BY the event-time column (the source's WATERMARK column), not readings.temp
