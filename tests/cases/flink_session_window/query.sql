-- The SESSION examples of Flink's documentation (docs/dev/table/sql/queries/window-tvf.md,
-- release 1.20, "SESSION"), as written there, over its own Bid table (input.jsonl, in the order
-- it prints): the rows of the session table function with and without PARTITION BY, and their
-- aggregation. expected.jsonl is the table Flink's documentation prints for each. Prices are
-- DOUBLE here, DECIMAL(10, 2) there.
--
-- One change: the watermark's bound is a minute, not Flink's second. The table's rows are out of
-- order (08:06 after 08:07, 08:08 after 08:09); Flink's example keeps them because its watermark
-- moves only every 200 ms (pipeline.auto-watermark-interval), after all five rows, while Eddy
-- decides lateness row by row, so that a replay and a live run agree: with a one-second bound those
-- two rows would be late here.
CREATE SOURCE Bid (
    bidtime TIMESTAMP,
    price   DOUBLE,
    item    TEXT,
    WATERMARK FOR bidtime AS bidtime - INTERVAL '1' MINUTE
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

-- session window with partition keys
INSERT INTO out
SELECT 'rows per item' AS q, * FROM TABLE(
    SESSION(TABLE Bid PARTITION BY item, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES));

-- the same with the named params
INSERT INTO out
SELECT 'rows per item, named' AS q, * FROM TABLE(
    SESSION(
      DATA => TABLE Bid PARTITION BY item,
      TIMECOL => DESCRIPTOR(bidtime),
      GAP => INTERVAL '5' MINUTES));

-- apply aggregation on the session windowed table with partition keys
INSERT INTO out
SELECT 'sum per item' AS q, window_start, window_end, item, SUM(price) AS total_price
  FROM TABLE(
      SESSION(TABLE Bid PARTITION BY item, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES))
  GROUP BY item, window_start, window_end;

-- session window without partition keys
INSERT INTO out
SELECT 'rows' AS q, * FROM TABLE(
    SESSION(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES));

-- apply aggregation on the session windowed table without partition keys
INSERT INTO out
SELECT 'sum' AS q, window_start, window_end, SUM(price) AS total_price
  FROM TABLE(
      SESSION(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES))
  GROUP BY window_start, window_end;
