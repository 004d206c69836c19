CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, ts,
       avg(temp) OVER (PARTITION BY device_id ORDER BY ts
                       ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING) AS centered
FROM readings;

-- expect: 8:8: an OVER frame must end at CURRENT ROW: rows that follow have not happened yet
