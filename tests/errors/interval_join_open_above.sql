CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SOURCE doors (device_id TEXT, open BOOLEAN, ts TIMESTAMP,
                     WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'doors.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT r.device_id, r.temp, d.ts AS opened_at
FROM readings r LEFT JOIN doors d
  ON r.device_id = d.device_id AND d.ts >= r.ts;

-- expect: 9:1: this interval join bounds the right side's event time from below only: add an upper bound too (`AND r.ts <= l.ts + INTERVAL '1' MINUTE`); without both, each side's rows would have to be kept forever
