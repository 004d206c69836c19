-- Sudden jumps: within 10 seconds a device's readings spread by more than 15 °C (a sensor fault or
-- a hot spot). One alert per device and window, published to alerts/spike/<device>.
CREATE SOURCE readings (
    device_id  TEXT,
    temp       DOUBLE,
    ts         TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'mqtt', url = '${MQTT_URL:-mqtt://localhost:1883}',
        topic = 'factory/+/telemetry', format = 'json');

CREATE SINK spikes WITH (connector = 'mqtt', url = '${MQTT_URL:-mqtt://localhost:1883}',
                         topic = 'alerts/spike/{device_id}', format = 'json');

INSERT INTO spikes
SELECT device_id, window_start, window_end,
       min(temp) AS min_temp, max(temp) AS max_temp, max(temp) - min(temp) AS spread,
       count(*) AS readings
FROM TUMBLE(readings, ts, INTERVAL '10' SECOND)
GROUP BY device_id, window_start, window_end
HAVING max(temp) - min(temp) > 15;
