-- The rows of Flink's window table functions read as they are, without an aggregate: the
-- TUMBLE, HOP, CUMULATE and TUMBLE-with-offset examples of Flink's documentation (docs/dev/table/
-- sql/queries/window-tvf.md), as written there, over its Bid table. expected.jsonl is the table
-- Flink's documentation prints for each: every row once per window it is in, with window_start,
-- window_end and window_time (window_end - 1ms). Prices are DOUBLE here, DECIMAL(10, 2) there.
CREATE SOURCE Bid (
    bidtime TIMESTAMP,
    price   DOUBLE,
    item    TEXT,
    WATERMARK FOR bidtime AS bidtime - INTERVAL '1' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

INSERT INTO out
SELECT 'tumble' AS q, * FROM TABLE(
   TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES));

INSERT INTO out
SELECT 'hop' AS q, * FROM TABLE(
    HOP(
      DATA => TABLE Bid,
      TIMECOL => DESCRIPTOR(bidtime),
      SLIDE => INTERVAL '5' MINUTES,
      SIZE => INTERVAL '10' MINUTES));

INSERT INTO out
SELECT 'cumulate' AS q, * FROM TABLE(
    CUMULATE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '2' MINUTES, INTERVAL '10' MINUTES));

INSERT INTO out
SELECT 'tumble offset' AS q, * FROM TABLE(
   TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES, INTERVAL '1' MINUTES));
