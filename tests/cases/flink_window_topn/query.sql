-- Window Top-N after a window aggregation, the example of Flink's documentation (docs/dev/table/
-- sql/queries/window-topn.md) as written there, over its Bid table: the top 3 suppliers by sales
-- in every 10-minute window. expected.jsonl is the result Flink's documentation prints (prices as
-- DOUBLE here, DECIMAL(10, 2) there).
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
