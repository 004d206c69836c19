-- The window aggregation examples of Flink's documentation (docs/dev/table/sql/queries/
-- window-agg.md), as written there, over its Bid table: expected.jsonl is the result Flink's
-- documentation prints for each (prices as DOUBLE here, DECIMAL(10, 2) there). Where the page
-- prints no result (ROLLUP "equivalent to the one above", CUBE "equivalent" to the GROUPING SETS it
-- lists, the cascading aggregation), the rows are worked by hand from the Bid table.
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

-- GROUPING SETS
INSERT INTO out
SELECT 'grouping sets' AS q, window_start, window_end, supplier_id, SUM(price) as price
  FROM TABLE(
    TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))
  GROUP BY window_start, window_end, GROUPING SETS ((supplier_id), ());

-- ROLLUP: the same rows as the GROUPING SETS above
INSERT INTO out
SELECT 'rollup' AS q, window_start, window_end, supplier_id, SUM(price) as price
FROM TABLE(
    TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))
GROUP BY window_start, window_end, ROLLUP (supplier_id);

-- CUBE: every subset of (supplier_id, item)
INSERT INTO out
SELECT 'cube' AS q, window_start, window_end, item, supplier_id, SUM(price) as price
  FROM TABLE(
    TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))
  GROUP BY window_start, window_end, CUBE (supplier_id, item);

-- Cascading window aggregation: 5-minute windows per supplier, then 10-minute windows over their
-- window_time. By hand: [08:05, 08:10) supplier1 6, supplier2 5; [08:10, 08:15) supplier2 3,
-- supplier1 1; [08:15, 08:20) supplier2 6; their rowtimes 08:09:59.999, 08:14:59.999 and
-- 08:19:59.999 fall in [08:00, 08:10) (11) and [08:10, 08:20) (10).
-- The view is Flink's as its documentation now writes it: "The window start and window end fields
-- of inner Window TVF are optional in the select clause. However, if they appear in the clause, they
-- need to be aliased to prevent name conflicting with the window start and window end of the outer
-- Window TVF." (Eddy refuses the unaliased form with that reason.)
CREATE VIEW window1 AS
SELECT window_start AS window_5mintumble_start, window_end AS window_5mintumble_end,
       window_time AS rowtime, SUM(price) AS partial_price
  FROM TABLE(
    TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES))
  GROUP BY supplier_id, window_start, window_end, window_time;

INSERT INTO out
SELECT 'cascading' AS q, window_start, window_end, SUM(partial_price) as total_price
  FROM TABLE(
      TUMBLE(TABLE window1, DESCRIPTOR(rowtime), INTERVAL '10' MINUTES))
  GROUP BY window_start, window_end;

-- GROUPING(column): 1 on the rows of a set that leaves the column out (worked by hand).
INSERT INTO out
SELECT 'grouping' AS q, window_start, supplier_id, GROUPING(supplier_id) AS g, SUM(price) AS price
  FROM TABLE(
    TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))
  GROUP BY window_start, window_end, ROLLUP (supplier_id);
