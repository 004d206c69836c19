CREATE SOURCE readings (
    device_id TEXT,
    ts        TIMESTAMP,
    sent      TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'r.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');
INSERT INTO alerts
SELECT device_id, window_end, count(*) AS n
FROM TUMBLE(readings, sent, INTERVAL '1' MINUTE)
GROUP BY device_id, window_start, window_end;

-- expect: 10:23: TUMBLE runs on the event-time column of 'readings', which is 'ts' (its WATERMARK), not 'sent'
