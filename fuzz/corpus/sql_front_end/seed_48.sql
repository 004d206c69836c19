CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    humidity  DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'mqtt', url = 'mqtt://localhost:1883', topic = 'factory/+/telemetry');
CREATE SINK alerts WITH (connector = 'stdout');

CREATE SINK out WITH (connector = 'mqtt', url = 'mqtt://localhost', topic = 'alerts/{device}');
INSERT INTO out
SELECT device_id, temp FROM readings WHERE temp > 80;

-- expect: 11:1: sink 'out': the topic template uses {device}, but the query's columns are: device_id, temp
