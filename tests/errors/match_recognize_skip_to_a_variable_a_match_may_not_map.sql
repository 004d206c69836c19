CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

-- A match of A alone maps no row to B: the standard makes skipping to it an exception at run
-- time, so the query is refused rather than skipping somewhere else.
INSERT INTO alerts
SELECT * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id ORDER BY ts
    MEASURES COUNT(*) AS n
    AFTER MATCH SKIP TO FIRST B
    PATTERN (A B?)
    DEFINE A AS temp >= 100, B AS temp > PREV(temp)
);

INSERT INTO alerts
SELECT * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id ORDER BY ts
    MEASURES COUNT(*) AS n
    AFTER MATCH SKIP TO LAST A
    PATTERN (A B)
    DEFINE A AS temp >= 100, B AS temp > PREV(temp)
);

-- expect: 12:31: AFTER MATCH SKIP TO FIRST B: a match of this pattern may map no row to B, or only its first row, and the SQL standard makes skipping there an error; skip to a variable every match maps after its first row
-- expect: 21:30: AFTER MATCH SKIP TO LAST A: a match of this pattern may map no row to A, or only its first row, and the SQL standard makes skipping there an error; skip to a variable every match maps after its first row
