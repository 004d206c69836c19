CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id ORDER BY ts
    MEASURES LAST(B.temp) AS t
    PATTERN (A B)
    DEFINE C AS C.temp > 1
);

-- expect: 11:12: DEFINE C: the PATTERN has no variable C (it has: A, B)
