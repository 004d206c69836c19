-- where the next match may start: past the last row, the next row, the first or last row of a variable
-- Expected rows in expected.jsonl are worked out by hand from the standard's rules.
CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

INSERT INTO out
SELECT 'past' AS q, a, n FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(A.temp) AS a, COUNT(*) AS n
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (A B+)
    DEFINE B AS temp > PREV(temp)
);

INSERT INTO out
SELECT 'next' AS q, a, n FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(A.temp) AS a, COUNT(*) AS n
    ONE ROW PER MATCH
    AFTER MATCH SKIP TO NEXT ROW
    PATTERN (A B+)
    DEFINE B AS temp > PREV(temp)
);

INSERT INTO out
SELECT 'first_b' AS q, a, n FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(A.temp) AS a, COUNT(*) AS n
    ONE ROW PER MATCH
    AFTER MATCH SKIP TO FIRST B
    PATTERN (A B+)
    DEFINE B AS temp > PREV(temp)
);

INSERT INTO out
SELECT 'last_b' AS q, a, n FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(A.temp) AS a, COUNT(*) AS n
    ONE ROW PER MATCH
    AFTER MATCH SKIP TO LAST B
    PATTERN (A B+)
    DEFINE B AS temp > PREV(temp)
);

