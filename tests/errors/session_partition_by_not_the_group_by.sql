CREATE SOURCE Bid (bidtime TIMESTAMP, price DOUBLE, item TEXT, supplier_id TEXT,
                  WATERMARK FOR bidtime AS bidtime - INTERVAL '1' SECOND)
  WITH (connector = 'file', path = 'bids.jsonl');
CREATE SINK out WITH (connector = 'stdout');

INSERT INTO out
SELECT window_start, window_end, supplier_id, SUM(price) AS total
  FROM TABLE(SESSION(TABLE Bid PARTITION BY item, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES))
  GROUP BY supplier_id, window_start, window_end;

-- expect: 9:12: SESSION(TABLE ... PARTITION BY item) groups its sessions by exactly those columns, but the GROUP BY has [supplier_id]; group by item, window_start, window_end, or partition the sessions by the columns grouped (SESSION(TABLE source PARTITION BY device_id, ...) for a session per device)
