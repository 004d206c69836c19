-- Overheating machines: the average temperature over the last minute, updated every 10 seconds,
-- above 75 °C. One alert per device and window, published to alerts/overheat/<device>.
CREATE SOURCE readings (
    device_id  TEXT,
    temp       DOUBLE,
    humidity   DOUBLE,
    ts         TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'mqtt', url = '${MQTT_URL:-mqtt://localhost:1883}',
        topic = 'factory/+/telemetry', format = 'json', qos = 1);

CREATE SINK overheat WITH (connector = 'mqtt', url = '${MQTT_URL:-mqtt://localhost:1883}',
                           topic = 'alerts/overheat/{device_id}', format = 'json', qos = 1);

INSERT INTO overheat
SELECT device_id, window_start, window_end, avg(temp) AS avg_temp, max(temp) AS max_temp
FROM HOP(readings, ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start, window_end
HAVING avg(temp) > 75;
