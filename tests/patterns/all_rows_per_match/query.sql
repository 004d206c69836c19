-- ALL ROWS PER MATCH: a row per row of each match, with the partition columns, the ordering
-- column, the measures (running unless FINAL: over the match up to the row being output) and the
-- input's remaining columns, as the standard lays the output out; empty matches shown (one row,
-- of the row where the empty match was found, its measures over no rows), omitted, or shown with
-- the rows no match maps (their measures NULL). Matches are numbered as they are found, empty ones
-- too, whether or not their rows are output.
-- The first query is the "all rows report" of Oracle's Data Warehousing Guide, SQL for Pattern
-- Matching (https://docs.oracle.com/en/database/oracle/oracle-database/19/dwhsg/sql-pattern-matching-data-warehouses.html),
-- over its Ticker rows of ACME, with two running measures added; all expected rows in
-- expected.jsonl are worked out by hand.
CREATE SOURCE ticker (
    symbol TEXT,
    ts     TIMESTAMP,
    price  BIGINT,
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (connector = 'file', path = 'ticker.jsonl');

CREATE SOURCE readings (
    device_id TEXT,
    ts        TIMESTAMP,
    temp      BIGINT,
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (connector = 'file', path = 'small.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

-- Prices 12 17 19 21 25 12 15 20 24 25 19 15 25 25 14 12 14 24 23 22 (April 1 to 20): a fall
-- then a rise from April 5 to 10, from 10 to 13 (skipping to the last UP, April 10 starts the
-- next match), from 14 to 18.
INSERT INTO out
SELECT 'oracle_v' AS q, * FROM ticker MATCH_RECOGNIZE (
    PARTITION BY symbol
    ORDER BY ts
    MEASURES STRT.ts AS start_ts,
             FINAL LAST(DOWN.ts) AS bottom_ts,
             FINAL LAST(UP.ts) AS end_ts,
             MATCH_NUMBER() AS match_num,
             CLASSIFIER() AS var_match,
             RUNNING LAST(UP.ts) AS up_so_far,
             COUNT(*) AS rows_so_far
    ALL ROWS PER MATCH
    AFTER MATCH SKIP TO LAST UP
    PATTERN (STRT DOWN+ UP+)
    DEFINE DOWN AS DOWN.price < PREV(DOWN.price),
           UP AS UP.price > PREV(UP.price)
);

-- temps 3 5 6 2 4 1: A* finds an empty match at 3 (no PREV), A = 5 6, an empty match at 2,
-- A = 4, an empty match at 1.
INSERT INTO out
SELECT 'show' AS q, * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES MATCH_NUMBER() AS m, CLASSIFIER() AS c, COUNT(*) AS n
    ALL ROWS PER MATCH SHOW EMPTY MATCHES
    PATTERN (A*)
    DEFINE A AS temp > PREV(temp)
);

INSERT INTO out
SELECT 'omit' AS q, * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES MATCH_NUMBER() AS m, CLASSIFIER() AS c, COUNT(*) AS n
    ALL ROWS PER MATCH OMIT EMPTY MATCHES
    PATTERN (A*)
    DEFINE A AS temp > PREV(temp)
);

-- A below 4 then B rising: 3 5, then 6 in no match, 2 4, then 1 in no match (no B follows).
INSERT INTO out
SELECT 'unmatched' AS q, * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES MATCH_NUMBER() AS m, CLASSIFIER() AS c, FINAL COUNT(*) AS total
    ALL ROWS PER MATCH WITH UNMATCHED ROWS
    PATTERN (A B)
    DEFINE A AS temp < 4, B AS temp > PREV(temp)
);
