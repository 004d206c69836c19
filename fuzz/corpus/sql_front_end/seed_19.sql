-- above 30 degrees for 5 minutes, reported when the 5 minutes are reached (a condition reads FIRST(S.ts))
-- Expected rows in expected.jsonl are worked out by hand from the standard's rules.
CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

INSERT INTO out
SELECT device_id, since, confirmed_at FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(S.ts) AS since, LAST(E.ts) AS confirmed_at
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (S H*? E)
    DEFINE S AS temp > 30, H AS temp > 30,
           E AS temp > 30 AND ts >= FIRST(S.ts) + INTERVAL '5' MINUTE
);
