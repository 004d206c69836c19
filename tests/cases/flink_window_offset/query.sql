-- Window offsets, Flink's optional last argument of TUMBLE, HOP and CUMULATE: windows start at the
-- offset (and every size, slide or step from it) instead of at the epoch. Flink's documentation
-- (docs/dev/table/sql/queries/window-tvf.md, "Window Offset") assigns its Bid readings to
-- TUMBLE(..., INTERVAL '10' MINUTES, INTERVAL '1' MINUTES) windows [08:01, 08:11) and
-- [08:11, 08:21); expected.jsonl sums them, and the HOP and CUMULATE windows (offset 1 minute, and
-- a negative offset), by hand.
CREATE SOURCE Bid (
    bidtime     TIMESTAMP,
    price       DOUBLE,
    item        TEXT,
    supplier_id TEXT,
    WATERMARK FOR bidtime AS bidtime - INTERVAL '1' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

INSERT INTO out
SELECT 'tumble' AS q, window_start, window_end, SUM(price) AS price
  FROM TABLE(
    TUMBLE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '10' MINUTES, INTERVAL '1' MINUTES))
  GROUP BY window_start, window_end;

-- Bid: 08:05 4, 08:07 2, 08:09 5, 08:11 3, 08:13 1, 08:17 6; windows of 10 minutes every 5 from 08:01.
INSERT INTO out
SELECT 'hop' AS q, window_start, window_end, SUM(price) AS price
  FROM TABLE(
    HOP(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES, INTERVAL '10' MINUTES, INTERVAL '1' MINUTES))
  GROUP BY window_start, window_end;

-- Periods of 10 minutes from 07:59 (offset -1 minute), growing in steps of 5 minutes.
INSERT INTO out
SELECT 'cumulate' AS q, window_start, window_end, SUM(price) AS price
  FROM TABLE(
    CUMULATE(TABLE Bid, DESCRIPTOR(bidtime), INTERVAL '5' MINUTES, INTERVAL '10' MINUTES, INTERVAL '-1' MINUTE))
  GROUP BY window_start, window_end;
