CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SOURCE doors (device_id TEXT, open BOOLEAN, ts TIMESTAMP,
                     WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'doors.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT r.device_id, r.temp, d.open
FROM (SELECT * FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(ts), INTERVAL '1' MINUTE))) r
JOIN (SELECT * FROM TABLE(TUMBLE(TABLE doors, DESCRIPTOR(ts), INTERVAL '1' MINUTE))) d
  ON r.device_id = d.device_id AND r.window_start = d.window_start;

-- expect: 9:1: a window join equates both window bounds: ON l.window_start = r.window_start AND l.window_end = r.window_end (and the keys)
