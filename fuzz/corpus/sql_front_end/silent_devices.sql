-- Silent devices: a machine that has sent nothing for 5 minutes. Each machine's readings form a
-- session that ends 5 minutes after its last reading; the session closing is the alert.
--
-- While other machines report, their readings move the watermark and the alert comes 5 minutes
-- (plus the 2 s watermark bound) after the quiet machine's last reading. If every machine goes
-- quiet, nothing moves the watermark but the clock: after `idle_timeout` without any message the
-- source's event time follows the wall clock, so the alerts still come on time.
CREATE SOURCE readings (
    device_id  TEXT,
    temp       DOUBLE,
    ts         TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'mqtt', url = '${MQTT_URL:-mqtt://localhost:1883}',
        topic = 'factory/+/telemetry', format = 'json', idle_timeout = '30s');

CREATE SINK silent WITH (connector = 'mqtt', url = '${MQTT_URL:-mqtt://localhost:1883}',
                         topic = 'alerts/silent/{device_id}', format = 'json', qos = 1);

INSERT INTO silent
SELECT device_id,
       window_end - INTERVAL '5' MINUTE AS last_seen,
       window_end AS silent_since,
       count(*) AS readings_before
FROM SESSION(readings, ts, INTERVAL '5' MINUTE)
GROUP BY device_id, window_start, window_end;
