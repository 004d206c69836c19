-- The MATCH_RECOGNIZE examples of Flink's documentation (docs/dev/table/sql/queries/
-- match_recognize.md) that print a result, as written there, each over the table it gives
-- (Ticker's `price` and `tax` are Long there, BIGINT here). expected.jsonl is what the page
-- prints. Two changes: the WITHIN example's DEFINE lacks the comma between its two conditions on
-- the page (added here); unquoted names fold to lower case in Eddy (avgPrice is avgprice).
-- The page's AFTER MATCH SKIP TO LAST A example is refused by Eddy (tests/errors/
-- match_recognize_flink_skip_to_last_a.sql): with PATTERN (A+ C) a match may map one row to A,
-- and skipping to it then is the error the standard describes (Flink's page gets its rows because
-- no match of its table does so).
CREATE SOURCE ticker_down (
    symbol  TEXT,
    rowtime TIMESTAMP,
    price   BIGINT,
    tax     BIGINT,
    WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND
) WITH (connector = 'file', path = 'ticker_down.jsonl');

CREATE SOURCE ticker_avg (
    symbol  TEXT,
    rowtime TIMESTAMP,
    price   BIGINT,
    tax     BIGINT,
    WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND
) WITH (connector = 'file', path = 'ticker_avg.jsonl');

CREATE SOURCE xyz_greedy (
    symbol  TEXT,
    rowtime TIMESTAMP,
    price   BIGINT,
    tax     BIGINT,
    WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND
) WITH (connector = 'file', path = 'xyz_greedy.jsonl');

CREATE SOURCE ticker_drop (
    symbol  TEXT,
    rowtime TIMESTAMP,
    price   BIGINT,
    tax     BIGINT,
    WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND
) WITH (connector = 'file', path = 'ticker_drop.jsonl');

CREATE SOURCE xyz_output (
    symbol  TEXT,
    rowtime TIMESTAMP,
    price   BIGINT,
    tax     BIGINT,
    WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND
) WITH (connector = 'file', path = 'xyz_output.jsonl');

CREATE SOURCE xyz_skip (
    symbol  TEXT,
    rowtime TIMESTAMP,
    price   BIGINT,
    tax     BIGINT,
    WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND
) WITH (connector = 'file', path = 'xyz_skip.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

-- "Examples": periods of a constantly decreasing price.
INSERT INTO out
SELECT 'falling' AS q, *
FROM ticker_down
    MATCH_RECOGNIZE (
        PARTITION BY symbol
        ORDER BY rowtime
        MEASURES
            START_ROW.rowtime AS start_tstamp,
            LAST(PRICE_DOWN.rowtime) AS bottom_tstamp,
            LAST(PRICE_UP.rowtime) AS end_tstamp
        ONE ROW PER MATCH
        AFTER MATCH SKIP TO LAST PRICE_UP
        PATTERN (START_ROW PRICE_DOWN+ PRICE_UP)
        DEFINE
            PRICE_DOWN AS
                (LAST(PRICE_DOWN.price, 1) IS NULL AND PRICE_DOWN.price < START_ROW.price) OR
                    PRICE_DOWN.price < LAST(PRICE_DOWN.price, 1),
            PRICE_UP AS
                PRICE_UP.price > LAST(PRICE_DOWN.price, 1)
    ) MR;

-- "Aggregations": the longest periods whose average price stays below 15.
INSERT INTO out
SELECT 'aggregations' AS q, *
FROM ticker_avg
    MATCH_RECOGNIZE (
        PARTITION BY symbol
        ORDER BY rowtime
        MEASURES
            FIRST(A.rowtime) AS start_tstamp,
            LAST(A.rowtime) AS end_tstamp,
            AVG(A.price) AS avgPrice
        ONE ROW PER MATCH
        AFTER MATCH SKIP PAST LAST ROW
        PATTERN (A+ B)
        DEFINE
            A AS AVG(A.price) < 15
    ) MR;

-- "Greedy & Reluctant Quantifiers": B* and B*?.
INSERT INTO out
SELECT 'greedy' AS q, *
FROM xyz_greedy
    MATCH_RECOGNIZE(
        PARTITION BY symbol
        ORDER BY rowtime
        MEASURES
            C.price AS lastPrice
        ONE ROW PER MATCH
        AFTER MATCH SKIP PAST LAST ROW
        PATTERN (A B* C)
        DEFINE
            A AS A.price > 10,
            B AS B.price < 15,
            C AS C.price > 12
    );

INSERT INTO out
SELECT 'reluctant' AS q, *
FROM xyz_greedy
    MATCH_RECOGNIZE(
        PARTITION BY symbol
        ORDER BY rowtime
        MEASURES
            C.price AS lastPrice
        ONE ROW PER MATCH
        AFTER MATCH SKIP PAST LAST ROW
        PATTERN (A B*? C)
        DEFINE
            A AS A.price > 10,
            B AS B.price < 15,
            C AS C.price > 12
    );

-- "Time constraint": a drop of 10 within an hour.
INSERT INTO out
SELECT 'within' AS q, *
FROM ticker_drop
    MATCH_RECOGNIZE(
        PARTITION BY symbol
        ORDER BY rowtime
        MEASURES
            C.rowtime AS dropTime,
            A.price - C.price AS dropDiff
        ONE ROW PER MATCH
        AFTER MATCH SKIP PAST LAST ROW
        PATTERN (A B* C) WITHIN INTERVAL '1' HOUR
        DEFINE
            B AS B.price > A.price - 10,
            C AS C.price < A.price - 10
    );

-- "Output Mode": the partition column, then the measures.
INSERT INTO out
SELECT 'output mode' AS q, *
FROM xyz_output
    MATCH_RECOGNIZE(
        PARTITION BY symbol
        ORDER BY rowtime
        MEASURES
            FIRST(A.price) AS startPrice,
            LAST(A.price) AS topPrice,
            B.price AS lastPrice
        ONE ROW PER MATCH
        PATTERN (A+ B)
        DEFINE
            A AS LAST(A.price, 1) IS NULL OR A.price > LAST(A.price, 1),
            B AS B.price < LAST(A.price)
    );

-- "After Match Strategy": AFTER MATCH SKIP PAST LAST ROW.
INSERT INTO out
SELECT 'skip past last row' AS q, *
FROM xyz_skip
    MATCH_RECOGNIZE(
        PARTITION BY symbol
        ORDER BY rowtime
        MEASURES
            SUM(A.price) AS sumPrice,
            FIRST(rowtime) AS startTime,
            LAST(rowtime) AS endTime
        ONE ROW PER MATCH
        AFTER MATCH SKIP PAST LAST ROW
        PATTERN (A+ C)
        DEFINE
            A AS SUM(A.price) < 30
    );

-- "After Match Strategy": AFTER MATCH SKIP TO NEXT ROW. One row more than the page prints: after
-- the match of rows #5-#7, matching resumes at row #6, where A (7, its sum below 30) and C (14, any
-- row) make a match of rows #6-#7 with sumPrice 7, as the standard's rules (and Trino's and
-- Oracle's) give it; the page stops at the match of rows #5-#7.
INSERT INTO out
SELECT 'skip to next row' AS q, *
FROM xyz_skip
    MATCH_RECOGNIZE(
        PARTITION BY symbol
        ORDER BY rowtime
        MEASURES
            SUM(A.price) AS sumPrice,
            FIRST(rowtime) AS startTime,
            LAST(rowtime) AS endTime
        ONE ROW PER MATCH
        AFTER MATCH SKIP TO NEXT ROW
        PATTERN (A+ C)
        DEFINE
            A AS SUM(A.price) < 30
    );
