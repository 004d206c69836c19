CREATE SOURCE readings (
    device_id TEXT,
    ts        BIGINT,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'r.jsonl');

-- expect: 4:19: WATERMARK FOR 'ts': the event-time column must be a TIMESTAMP, not Int64
