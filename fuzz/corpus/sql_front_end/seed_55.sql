CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    humidity  DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'mqtt', url = 'mqtt://localhost:1883', topic = 'factory/+/telemetry');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT device_id, temp FROM reading WHERE temp > 80;

-- expect: 11:29: unknown source 'reading'; did you mean 'readings'? defined: readings
