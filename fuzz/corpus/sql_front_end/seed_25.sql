CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    humidity  DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'mqtt', url = 'mqtt://localhost:1883', topic = 'factory/+/telemetry');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, avg(temp) AS avg_temp FROM readings GROUP BY device_id;

-- expect: 11:64: GROUP BY on a stream needs a window: read the source through TUMBLE(source, ts, size) or HOP(source, ts, slide, size) and add window_start, window_end to the GROUP BY
