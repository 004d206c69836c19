CREATE SOURCE Bid (bidtime TIMESTAMP, price DOUBLE, item TEXT, supplier_id TEXT,
                  WATERMARK FOR bidtime AS bidtime - INTERVAL '1' SECOND)
  WITH (connector = 'file', path = 'bids.jsonl');
CREATE SINK out WITH (connector = 'stdout');

INSERT INTO out
SELECT window_start, window_end, item, SUM(price) AS total
  FROM TABLE(SESSION(TABLE Bid PARTITION BY itme, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES))
  GROUP BY item, window_start, window_end;

-- expect: 8:45: SESSION: PARTITION BY itme: 'bid' has no column 'itme'; its columns are bidtime, price, item, supplier_id
