CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, lead(temp) OVER (PARTITION BY device_id ORDER BY ts) - temp AS step
FROM readings;

-- expect: 7:19: lead reads a reading that has not arrived yet: a continuous query looks back, with LAG (the reading before)
