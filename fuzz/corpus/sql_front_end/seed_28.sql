CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    humidity  DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'mqtt', url = 'mqtt://localhost:1883', topic = 'factory/+/telemetry');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, window_start, window_end, avg(temp) AS a
FROM HOP(readings, ts, INTERVAL '1' MINUTE, INTERVAL '10' SECOND)
GROUP BY device_id, window_start, window_end;

-- expect: 12:33: HOP: the slide (1min) is longer than the size (10s): rows between windows would be in none; arguments are (source, time_column, slide, size)
