CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl', late_sink = 'latecomers');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts SELECT device_id, temp FROM readings;

-- expect: 3:66: late_sink: unknown sink 'latecomers'; defined: alerts
