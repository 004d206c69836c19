CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

CREATE VIEW readings AS SELECT device_id FROM readings;

-- expect: 5:13: 'readings' is already defined; a view needs a name of its own
