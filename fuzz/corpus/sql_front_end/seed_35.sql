CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id ORDER BY temp
    MEASURES LAST(B.temp) AS t
    PATTERN (A B)
    DEFINE B AS B.temp > 1
);

-- expect: 8:37: MATCH_RECOGNIZE must be ORDER BY the event-time column (a source's WATERMARK column, or a TIMESTAMP column of a view), ascending
