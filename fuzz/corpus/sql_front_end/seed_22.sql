-- a spike followed by a reading below zero within 10 s; the pair 12 s apart does not match
-- Expected rows in expected.jsonl are worked out by hand from the standard's rules.
CREATE SOURCE readings (
    device_id TEXT,
    temp      DOUBLE,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

INSERT INTO out
SELECT device_id, spike_at, low_at FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(S.ts) AS spike_at, LAST(D.ts) AS low_at
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (S X*? D) WITHIN INTERVAL '10' SECOND
    DEFINE S AS temp > 50, D AS temp < 0
);
