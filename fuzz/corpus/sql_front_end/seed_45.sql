CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    humidity  DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'mqtt', url = 'mqtt://localhost:1883', topic = 'factory/+/telemetry');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts SELECT device_id, tmp FROM readings;
INSERT INTO nowhere SELECT device_id FROM readings;

-- expect: 10:38: unknown column 'tmp' (did you mean 'temp'?); columns here: device_id, temp, humidity, ts
-- expect: 11:13: unknown sink 'nowhere'; defined: alerts
