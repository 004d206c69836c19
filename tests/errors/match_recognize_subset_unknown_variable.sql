CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id ORDER BY ts
    MEASURES LAST(U.temp) AS t
    PATTERN (A B+)
    SUBSET U = (A, C)
    DEFINE B AS B.temp > PREV(B.temp)
);

-- expect: 11:20: SUBSET U: the PATTERN has no variable C (it has: A, B)
