-- logical offsets FIRST(R.x, n) and LAST(R.x, n) (n rows after the first, before the last, of the
-- rows mapped to R; NULL beyond them), in MEASURES and, running, in DEFINE (the current row is the
-- last row of its variable there), and AVG over a BIGINT column in MEASURES and DEFINE.
-- Expected rows in expected.jsonl are worked out by hand from the standard's rules (ISO/IEC
-- 19075-5; Trino's and Oracle's MATCH_RECOGNIZE documentation give the same).
CREATE SOURCE readings (
    device_id TEXT,
    temp      BIGINT,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

-- temps 10 12 15 19 24 5 30 31 32 1: R = 12 15 19 24, F = 5; then R = 30 31 32, F = 1.
INSERT INTO out
SELECT 'offsets' AS q, device_id, started, second_r, before_last_r, far, beyond, avg_r
FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(R.ts) AS started,
             FIRST(R.temp, 1) AS second_r,
             LAST(R.temp, 1) AS before_last_r,
             LAST(R.temp, 3) AS far,
             FIRST(R.temp, 5) AS beyond,
             AVG(R.temp) AS avg_r
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (R{3,} F)
    DEFINE R AS R.temp > PREV(R.temp),
           F AS F.temp < AVG(R.temp)
);

-- Three readings each above the one two readings before it (the first two of a match have none):
-- 10 12 15 (15 > 10), then 19 24 5 fails (5 < 19), 24 5 30 (30 > 24), 31 32 1 fails.
INSERT INTO out
SELECT 'running' AS q, device_id, started, first_temp
FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(A.ts) AS started, LAST(A.temp, 2) AS first_temp
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (A{3})
    DEFINE A AS LAST(A.temp, 2) IS NULL OR A.temp > LAST(A.temp, 2)
);
