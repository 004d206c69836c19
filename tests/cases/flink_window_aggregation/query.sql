-- The window aggregation examples of Flink's documentation (docs/dev/table/sql/queries/
-- window-agg.md), as written there, over its Bid table: expected.jsonl is the result Flink's
-- documentation prints for each (prices as DOUBLE here, DECIMAL(10, 2) there).
CREATE SOURCE Bid (
    bidtime     TIMESTAMP,
    price       DOUBLE,
    item        TEXT,
    supplier_id TEXT,
    WATERMARK FOR bidtime AS bidtime - INTERVAL '1' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

-- tumbling window aggregation
INSERT INTO out
SELECT 'tumble' AS q, window_start, window_end, SUM(price) AS price
  FROM TABLE(
    TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))
  GROUP BY window_start, window_end;

-- hopping window aggregation
INSERT INTO out
SELECT 'hop' AS q, window_start, window_end, SUM(price) AS price
  FROM TABLE(
    HOP(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES, INTERVAL '10' MINUTES))
  GROUP BY window_start, window_end;

-- cumulative window aggregation
INSERT INTO out
SELECT 'cumulate' AS q, window_start, window_end, SUM(price) AS price
  FROM TABLE(
    CUMULATE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '2' MINUTES, INTERVAL '10' MINUTES))
  GROUP BY window_start, window_end;
