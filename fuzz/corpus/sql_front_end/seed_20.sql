-- three readings rising in a row, the last above 80
-- Expected rows in expected.jsonl are worked out by hand from the standard's rules.
CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

INSERT INTO out
SELECT * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(A.ts) AS started, LAST(C.ts) AS ended, FIRST(A.temp) AS from_temp, LAST(C.temp) AS to_temp, MATCH_NUMBER() AS m
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (A B C)
    DEFINE B AS B.temp > PREV(B.temp), C AS C.temp > PREV(C.temp) AND C.temp > 80
);
