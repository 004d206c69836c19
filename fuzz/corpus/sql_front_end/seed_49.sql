CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id FROM readings WHERE temp > 80
UNION
SELECT device_id FROM readings WHERE temp < 0;

-- expect: 5:1: UNION without ALL removes duplicates, which a stream cannot do without a window; use UNION ALL
