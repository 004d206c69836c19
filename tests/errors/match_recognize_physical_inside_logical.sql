CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

-- The standard nests physical navigation around logical navigation, never inside it.
INSERT INTO alerts
SELECT * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id ORDER BY ts
    MEASURES LAST(PREV(B.temp)) AS t
    PATTERN (A B)
    DEFINE B AS B.temp > PREV(B.temp)
);

-- expect: 10:14: LAST takes a column, and an offset: LAST(A.ts) or LAST(A.ts, 1); PREV, NEXT, FIRST and LAST cannot be inside it (write PREV(LAST(A.ts)), not LAST(PREV(A.ts)))
