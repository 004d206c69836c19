CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                        WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id ORDER BY ts
    MEASURES LAST(B.temp) AS t
    PATTERN (^ A B)
    DEFINE B AS B.temp > 1
);

-- expect: 7:15: PATTERN anchors ^ and $ have no meaning on a stream, which has no first or last row; remove them
