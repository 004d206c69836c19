-- a row that fits both alternatives takes the one written first
-- Expected rows in expected.jsonl are worked out by hand from the standard's rules.
CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

INSERT INTO out
SELECT 'l_first' AS q, started, ls, ms FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(ts) AS started, COUNT(L.*) AS ls, COUNT(M.*) AS ms
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN ((L | M) H)
    DEFINE L AS temp < 20, M AS temp < 10, H AS temp > 20
);

INSERT INTO out
SELECT 'm_first' AS q, started, ls, ms FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(ts) AS started, COUNT(L.*) AS ls, COUNT(M.*) AS ms
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN ((M | L) H)
    DEFINE L AS temp < 20, M AS temp < 10, H AS temp > 20
);

