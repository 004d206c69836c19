-- B+ takes as many rows as it can, B+? as few
-- Expected rows in expected.jsonl are worked out by hand from the standard's rules.
CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

INSERT INTO out
SELECT 'greedy' AS q, device_id, started, bs, c_at FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(A.ts) AS started, COUNT(B.*) AS bs, LAST(C.ts) AS c_at
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (A B+ C)
    DEFINE A AS temp < 20, C AS temp < 20
);

INSERT INTO out
SELECT 'reluctant' AS q, device_id, started, bs, c_at FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(A.ts) AS started, COUNT(B.*) AS bs, LAST(C.ts) AS c_at
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (A B+? C)
    DEFINE A AS temp < 20, C AS temp < 20
);

