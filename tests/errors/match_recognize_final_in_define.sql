CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

-- A condition is decided at its row: it cannot read the match's rows still to come.
INSERT INTO alerts
SELECT * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id ORDER BY ts
    MEASURES LAST(B.temp) AS t
    ALL ROWS PER MATCH
    PATTERN (A B+)
    DEFINE B AS B.temp > FINAL AVG(B.temp)
);

-- expect: 13:26: FINAL in DEFINE: a condition sees the match only up to the current row; FINAL belongs in MEASURES
