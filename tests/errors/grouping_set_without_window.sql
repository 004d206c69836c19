CREATE SOURCE Bid (bidtime TIMESTAMP, price DOUBLE, item TEXT, supplier_id TEXT,
                  WATERMARK FOR bidtime AS bidtime - INTERVAL '1' SECOND)
  WITH (connector = 'file', path = 'bids.jsonl');
CREATE SINK out WITH (connector = 'stdout');

INSERT INTO out
SELECT window_start, window_end, supplier_id, SUM(price) AS total
  FROM TABLE(TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES))
  GROUP BY GROUPING SETS ((window_start, window_end, supplier_id), (supplier_id));

-- expect: 9:28: the grouping set (supplier_id) leaves out window_start or window_end: every set of a window aggregate groups by the window; write GROUP BY window_start, window_end, GROUPING SETS (...)
