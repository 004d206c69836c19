CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

-- An excluded row would be neither output with its match nor unmatched: the standard forbids it.
INSERT INTO alerts
SELECT * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id ORDER BY ts
    MEASURES COUNT(*) AS n
    ALL ROWS PER MATCH WITH UNMATCHED ROWS
    PATTERN (A {- B -} C)
    DEFINE B AS B.temp > PREV(B.temp)
);

-- expect: 8:15: PATTERN exclusions {- ... -} cannot go with ALL ROWS PER MATCH WITH UNMATCHED ROWS
