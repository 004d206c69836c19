-- A* matches nothing where A fails (PREV of the first row is NULL, so A fails there)
-- Expected rows in expected.jsonl are worked out by hand from the standard's rules.
CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

INSERT INTO out
SELECT n, first_at, m FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES COUNT(*) AS n, FIRST(ts) AS first_at, MATCH_NUMBER() AS m
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (A*)
    DEFINE A AS temp > PREV(temp)
);
