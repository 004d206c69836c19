-- SESSION windows with a 1.5 s gap, readings exactly 1.5 s apart: one session, as in Flink (whose
-- session windows [t, t + gap) merge when they touch); 1.501 s apart: two. The watermark has no
-- bound, so a session's end is reached by the watermark before the reading at its end is taken:
-- the session must wait for it. Expected rows in expected.jsonl are worked out by hand.
CREATE SOURCE readings (
    device_id TEXT,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

INSERT INTO out
SELECT device_id, window_start, window_end, count(*) AS n
FROM SESSION(readings, ts, INTERVAL '1500' MILLISECOND)
GROUP BY device_id, window_start, window_end;
