-- Physical navigation PREV / NEXT, alone and around logical navigation (PREV(LAST(U.temp, 1)),
-- NEXT(FIRST(U.temp, 1), 2)), in MEASURES and DEFINE: it reaches rows of the partition outside
-- the match (before its first row, after its last), and is NULL beyond the partition, as Trino's
-- documentation describes physical navigation (https://trino.io/docs/current/sql/match-recognize.html).
-- Expected rows in expected.jsonl are worked out by hand.
CREATE SOURCE readings (
    device_id TEXT,
    temp      BIGINT,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

-- Rows 0..7: temps 5 7 10 14 9 3 8 20. Row 0 has no PREV, so U fails there; U = rows 1 2 3
-- (7 10 14), D = row 4 (9). Then 3 8 20 rise but no D follows: no second match.
INSERT INTO out
SELECT 'measures' AS q, device_id, started, before_first, two_before_first, after_last,
       three_after, beyond, prev_of_last_but_one, next_of_second, prev_of_match_end, next_ts
FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(U.ts) AS started,
             PREV(FIRST(U.temp)) AS before_first,          -- row 0: 5
             PREV(FIRST(U.temp), 2) AS two_before_first,   -- row -1: NULL
             NEXT(LAST(D.temp)) AS after_last,             -- row 5: 3
             NEXT(LAST(D.temp), 3) AS three_after,         -- row 7: 20
             NEXT(LAST(D.temp), 4) AS beyond,              -- row 8: NULL
             PREV(LAST(U.temp, 1), 1) AS prev_of_last_but_one, -- row 2 - 1 = row 1: 7
             NEXT(FIRST(U.temp, 1), 2) AS next_of_second,  -- row 2 + 2 = row 4: 9
             PREV(temp) AS prev_of_match_end,              -- row 4 - 1 = row 3: 14
             NEXT(D.ts) AS next_ts                         -- row 5
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (U{2,} D)
    DEFINE U AS temp > PREV(temp),
           D AS temp < PREV(temp)
);

-- S any row, B falling, C above the reading two rows before S (outside the match). Starts 0, 1
-- and 2 fail (B does not fall after them). From row 3 (S = 14): B = 9, 3; 8 does not fall, and
-- 8 > PREV(S.temp, 2) = row 1 = 7, so C = row 6.
INSERT INTO out
SELECT 'define' AS q, device_id, started, c_temp, before_s, before_last_b
FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(S.ts) AS started,
             LAST(C.temp) AS c_temp,
             PREV(S.temp, 2) AS before_s,              -- row 1: 7
             PREV(LAST(B.temp), 1) AS before_last_b    -- row 5 - 1 = row 4: 9
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (S B+ C)
    DEFINE B AS temp < PREV(temp),
           C AS temp > PREV(S.temp, 2) AND PREV(LAST(B.temp)) > 5
);
