CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SOURCE doors (device_id TEXT, open BOOLEAN, ts TIMESTAMP)
  WITH (connector = 'file', path = 'doors.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT r.device_id, r.temp, d.open
FROM readings r JOIN doors d ON r.device_id = d.device_id;

-- expect: 7:1: a JOIN of two streams needs a time bound: add `AND d.ts BETWEEN r.ts - INTERVAL '1' MINUTE AND r.ts` (an interval join), join the rows of two windows on their bounds (`l.window_start = r.window_start AND l.window_end = r.window_end`: a window join), or join a stream with a table (CREATE TABLE)
