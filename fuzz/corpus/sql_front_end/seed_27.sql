CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    humidity  DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'mqtt', url = 'mqtt://localhost:1883', topic = 'factory/+/telemetry');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, window_start, temp
FROM HOP(readings, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE);

-- expect: 12:6: rows of HOP(...) are in several windows each: aggregate them with GROUP BY ..., window_start, window_end
