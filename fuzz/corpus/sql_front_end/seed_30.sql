CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    humidity  DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'mqtt', url = 'mqtt://localhost:1883', topic = 'factory/+/telemetry');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, window_end, count(*) AS n
FROM TUMBLE(readings, ts, INTERVAL '1' MONTH)
GROUP BY device_id, window_start, window_end;

-- expect: 12:36: months and years have no fixed length; give the interval in days or less
