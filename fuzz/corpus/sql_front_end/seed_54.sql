CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    humidity  DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'mqtt', url = 'mqtt://localhost:1883', topic = 'factory/+/telemetry');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alert
SELECT device_id, temp FROM readings WHERE temp > 80;

-- expect: 10:13: unknown sink 'alert'; did you mean 'alerts'? defined: alerts
