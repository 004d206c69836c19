-- The window join examples of Flink's documentation (docs/dev/table/sql/queries/window-join.md),
-- as written there, over its LeftTable and RightTable (in the order it prints them): FULL OUTER,
-- SEMI (IN and EXISTS) and ANTI (NOT IN and NOT EXISTS). expected.jsonl is the table Flink's
-- documentation prints for each; the INNER, LEFT and RIGHT joins, which the page says are "very
-- similar" without printing them, are worked by hand from the same rows. Unquoted names fold to
-- lower case in Eddy (L_Num is l_num), as in PostgreSQL; Flink keeps their case.
--
-- One change: the watermark's bound is five minutes, not Flink's second. LeftTable's rows are out
-- of order (12:03 after 12:06); Flink's example keeps L3 because its watermark moves only every
-- 200 ms (pipeline.auto-watermark-interval), after all three rows, while Eddy decides lateness row
-- by row, so that a replay and a live run agree: with a one-second bound L3 would be late here.
CREATE SOURCE LeftTable (
    row_time TIMESTAMP,
    num      INT,
    id       TEXT,
    WATERMARK FOR row_time AS row_time - INTERVAL '5' MINUTE
) WITH (connector = 'file', path = 'left.jsonl');

CREATE SOURCE RightTable (
    row_time TIMESTAMP,
    num      INT,
    id       TEXT,
    WATERMARK FOR row_time AS row_time - INTERVAL '5' MINUTE
) WITH (connector = 'file', path = 'right.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

INSERT INTO out
SELECT 'full' AS q, L.num as L_Num, L.id as L_Id, R.num as R_Num, R.id as R_Id, L.window_start, L.window_end
           FROM (
               SELECT * FROM TABLE(TUMBLE(TABLE LeftTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
           ) L
           FULL JOIN (
               SELECT * FROM TABLE(TUMBLE(TABLE RightTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
           ) R
           ON L.num = R.num AND L.window_start = R.window_start AND L.window_end = R.window_end;

INSERT INTO out
SELECT 'inner' AS q, L.num as L_Num, L.id as L_Id, R.num as R_Num, R.id as R_Id, L.window_start, L.window_end
           FROM (
               SELECT * FROM TABLE(TUMBLE(TABLE LeftTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
           ) L
           JOIN (
               SELECT * FROM TABLE(TUMBLE(TABLE RightTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
           ) R
           ON L.num = R.num AND L.window_start = R.window_start AND L.window_end = R.window_end;

INSERT INTO out
SELECT 'left' AS q, L.num as L_Num, L.id as L_Id, R.num as R_Num, R.id as R_Id, L.window_start, L.window_end
           FROM (
               SELECT * FROM TABLE(TUMBLE(TABLE LeftTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
           ) L
           LEFT JOIN (
               SELECT * FROM TABLE(TUMBLE(TABLE RightTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
           ) R
           ON L.num = R.num AND L.window_start = R.window_start AND L.window_end = R.window_end;

INSERT INTO out
SELECT 'right' AS q, L.num as L_Num, L.id as L_Id, R.num as R_Num, R.id as R_Id, R.window_start, R.window_end
           FROM (
               SELECT * FROM TABLE(TUMBLE(TABLE LeftTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
           ) L
           RIGHT JOIN (
               SELECT * FROM TABLE(TUMBLE(TABLE RightTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
           ) R
           ON L.num = R.num AND L.window_start = R.window_start AND L.window_end = R.window_end;

INSERT INTO out
SELECT 'semi in' AS q, *
           FROM (
               SELECT * FROM TABLE(TUMBLE(TABLE LeftTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
           ) L WHERE L.num IN (
             SELECT num FROM (
               SELECT * FROM TABLE(TUMBLE(TABLE RightTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
             ) R WHERE L.window_start = R.window_start AND L.window_end = R.window_end);

INSERT INTO out
SELECT 'semi exists' AS q, *
           FROM (
               SELECT * FROM TABLE(TUMBLE(TABLE LeftTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
           ) L WHERE EXISTS (
             SELECT * FROM (
               SELECT * FROM TABLE(TUMBLE(TABLE RightTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
             ) R WHERE L.num = R.num AND L.window_start = R.window_start AND L.window_end = R.window_end);

INSERT INTO out
SELECT 'anti not in' AS q, *
           FROM (
               SELECT * FROM TABLE(TUMBLE(TABLE LeftTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
           ) L WHERE L.num NOT IN (
             SELECT num FROM (
               SELECT * FROM TABLE(TUMBLE(TABLE RightTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
             ) R WHERE L.window_start = R.window_start AND L.window_end = R.window_end);

INSERT INTO out
SELECT 'anti not exists' AS q, *
           FROM (
               SELECT * FROM TABLE(TUMBLE(TABLE LeftTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
           ) L WHERE NOT EXISTS (
             SELECT * FROM (
               SELECT * FROM TABLE(TUMBLE(TABLE RightTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
             ) R WHERE L.num = R.num AND L.window_start = R.window_start AND L.window_end = R.window_end);

-- Two window aggregates joined on their windows (worked by hand): [12:00, 12:05) has L1, L3 and
-- R2, R3; [12:05, 12:10) has L2 and R4.
INSERT INTO out
SELECT 'aggregates' AS q, L.window_start, L.n AS left_rows, R.n AS right_rows
  FROM (SELECT window_start, window_end, count(*) AS n
          FROM TABLE(TUMBLE(TABLE LeftTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
          GROUP BY window_start, window_end) L
  JOIN (SELECT window_start, window_end, count(*) AS n
          FROM TABLE(TUMBLE(TABLE RightTable, DESCRIPTOR(row_time), INTERVAL '5' MINUTES))
          GROUP BY window_start, window_end) R
    ON L.window_start = R.window_start AND L.window_end = R.window_end;
