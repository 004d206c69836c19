-- Pattern variables are identifiers: unquoted ones are folded to upper case (`hot` and `HOT` are one
-- variable, and CLASSIFIER() says HOT), quoted ones keep their case (`"b"` and `B` are two, and
-- CLASSIFIER() says b, in MEASURES and in the condition of "b").
-- Expected rows in expected.jsonl are worked out by hand from the standard's rules.
CREATE SOURCE readings (
    device_id TEXT,
    temp      BIGINT,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

-- temps 60 10 12 30 70 5 40: B = 60, "b" = 10 12; then B = 70, "b" = 5.
INSERT INTO out
SELECT 'quoted' AS q, device_id, started, last_var, small FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(B.ts) AS started, CLASSIFIER() AS last_var, COUNT("b".*) AS small
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (B "b"+)
    DEFINE B AS B.temp > 50, "b" AS "b".temp < 20 AND CLASSIFIER() = 'b'
);

INSERT INTO out
SELECT 'folded' AS q, device_id, started, last_var FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(Hot.ts) AS started, CLASSIFIER() AS last_var
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (hot)
    DEFINE HOT AS temp > 50
);
