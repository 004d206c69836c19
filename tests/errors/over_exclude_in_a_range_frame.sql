CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, avg(temp) OVER (PARTITION BY device_id ORDER BY ts
  RANGE BETWEEN INTERVAL '1' MINUTE PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW) AS avg_others
FROM readings;

-- expect: 8:63: this window frame exclusion is not supported: EXCLUDE CURRENT ROW is, in a ROWS frame that ends at CURRENT ROW (the frame ending at 1 PRECEDING), and EXCLUDE NO OTHERS
