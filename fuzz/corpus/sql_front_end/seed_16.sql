-- conditions that read another variable's row (A.temp) and aggregates over a variable's rows so far (AVG, COUNT)
-- Expected rows in expected.jsonl are worked out by hand from the standard's rules.
CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

INSERT INTO out
SELECT 'jump' AS q, device_id, FIRST_T AS started, n FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(A.ts) AS first_t, COUNT(*) AS n
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (A B+)
    DEFINE B AS B.temp > A.temp + 10
);

INSERT INTO out
SELECT 'average' AS q, device_id, first_t AS started, n FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(B.ts) AS first_t, COUNT(*) AS n
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (B{2,} C)
    DEFINE B AS AVG(B.temp) < 15 AND COUNT(B.*) <= 3, C AS C.temp > 2 * AVG(B.temp)
);
