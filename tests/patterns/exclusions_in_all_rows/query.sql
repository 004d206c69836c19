-- Exclusions {- B -}: the excluded rows are part of the match (its measures count them, running
-- measures of later rows too, and skipping is past them) but ALL ROWS PER MATCH does not output
-- them; ONE ROW PER MATCH is unchanged by them.
-- Expected rows in expected.jsonl are worked out by hand from the standard's rules.
CREATE SOURCE readings (
    device_id TEXT,
    temp      BIGINT,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

-- temps 100 90 80 85 95 110 120 50: A = 100, B = 90 80 (excluded), C = 85. From 95 on no A is
-- followed by a fall and a rise.
INSERT INTO out
SELECT 'all_rows' AS q, * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES MATCH_NUMBER() AS m, CLASSIFIER() AS c, COUNT(*) AS n, FINAL COUNT(B.*) AS nb
    ALL ROWS PER MATCH
    PATTERN (A {- B -}+ C)
    DEFINE A AS temp >= 100, B AS temp < PREV(temp), C AS temp > PREV(temp)
);

INSERT INTO out
SELECT 'one_row' AS q, * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(ts) AS started, COUNT(*) AS n, LAST(B.temp) AS last_b
    ONE ROW PER MATCH
    PATTERN (A {- B -}+ C)
    DEFINE A AS temp >= 100, B AS temp < PREV(temp), C AS temp > PREV(temp)
);
