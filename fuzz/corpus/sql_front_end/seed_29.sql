CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP)
  WITH (connector = 'file', path = 'readings.jsonl', idle_timeout = '30s');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts SELECT device_id, temp FROM readings;

-- expect: 2:54: idle_timeout advances the watermark, but source 'readings' declares no WATERMARK
