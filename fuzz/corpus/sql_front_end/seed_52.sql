CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    humidity  DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'mqtt', url = 'mqtt://localhost:1883', topic = 'factory/+/telemetry');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, window_start, avgg(temp) AS t
FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
GROUP BY device_id, window_start, window_end;

-- expect: 11:33: unknown function 'avgg' (did you mean 'avg'?)
