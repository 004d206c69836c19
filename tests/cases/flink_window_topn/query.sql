-- Window Top-N and window deduplication, the examples of Flink's documentation (docs/dev/table/
-- sql/queries/window-topn.md and window-deduplication.md) as written there, over its Bid table:
-- the top 3 suppliers by sales in every 10-minute window, the top 3 bids of every window, the last
-- bid of every window. expected.jsonl is the result Flink's documentation prints for each (prices
-- as DOUBLE here, DECIMAL(10, 2) there).
CREATE SOURCE Bid (
    bidtime     TIMESTAMP,
    price       DOUBLE,
    item        TEXT,
    supplier_id TEXT,
    WATERMARK FOR bidtime AS bidtime - INTERVAL '1' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

INSERT INTO out
SELECT *
  FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) as rownum
    FROM (
      SELECT window_start, window_end, supplier_id, SUM(price) as price, COUNT(*) as cnt
      FROM TABLE(
        TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))
      GROUP BY window_start, window_end, supplier_id
    )
  ) WHERE rownum <= 3;

-- Window Top-N right after the window table function (same page): the top 3 bids by price in
-- every 10-minute window. Flink's printed table has no window_time column (the page predates it),
-- so the outer SELECT lists the columns it prints.
INSERT INTO out
SELECT 'tvf top 3' AS q, bidtime, price, item, supplier_id, window_start, window_end, rownum
  FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) as rownum
    FROM TABLE(
               TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))
  ) WHERE rownum <= 3;

-- Window deduplication (docs/dev/table/sql/queries/window-deduplication.md, as written there, over
-- the same Bid table): the last bid of every 10-minute window.
INSERT INTO out
SELECT 'dedup' AS q, *
  FROM (
    SELECT bidtime, price, item, supplier_id, window_start, window_end,
      ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY bidtime DESC) as rownum
    FROM TABLE(
               TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))
  ) WHERE rownum <= 1;
