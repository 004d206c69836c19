CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    humidity  DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'mqtt', url = 'mqtt://localhost:1883', topic = 'factory/+/telemetry');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, window_start, avg(temp) AS avg_temp
FROM HOP(readings, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start;

-- expect: 12:6: GROUP BY over HOP(...) must include window_start and window_end
