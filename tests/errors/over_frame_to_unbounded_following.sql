CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, ts,
       avg(temp) OVER (PARTITION BY device_id ORDER BY ts
                       ROWS BETWEEN 2 PRECEDING AND UNBOUNDED FOLLOWING) AS to_the_end
FROM readings;

-- expect: 8:8: an OVER frame cannot end at UNBOUNDED FOLLOWING: a stream has no last row; end it at CURRENT ROW or n FOLLOWING
