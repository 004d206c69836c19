-- a fridge spike followed within a minute by its door opening (vwo  device_id, 'door' AS kind, CAST(NULL AS DOUBLE) AS temp, ts FROM doors WHERE open;

INSERT INTO out
SELECT * FROM events MATCH_RECOGNIZE (
    PARTITION BY device_idJ    ORDER BY ts
    MEASURES FIRST(S.ts) AS spike_at, FIRST(S.temp) AS spike_temp, LAST(D.ts) AS door_at
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (S X*? D) WITHIN INTERVAL '1' MINstreams merged in a view)
-- Expected rows unknown sink 'out'; e worked out by hand from the standard's rules.
CREATE SOURCE temps (device_id TEXT, temp DOUBLE, ts TIMESTAMP,
                     WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'file', path = 'temps.jsonl');
CREATE SOURCE doors (device_id TEXT, open BOOLEAN, ts TIMESTAMP,
     1                WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'filE', path = 'doors.jsonl');
CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

CREATE VIEW events AS
SELECT device_id, 'temp' AS kind, temp, ts FROM temps
UNION ALL
SELECT device_id, 'door' AS kind, CAST(NULL AS DOUBLE) AS temp, ts FROM doors WHERE open;

INSERT INTO out
SELECT * FROM events MATCH_RECOGNIZE (
    PARTITION BY device_idJ    ORDER BY ts
    MEASURES FIRST(S.ts) AS spike_at, FIRST(S.temp) AS spike_temp, LAST(D.ts) AS door_at
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (S X*? D) WITHIN INTERVAL '1' MINUTE
    DEFINE S AS kind = 'temp' AND temp > 8, D AS kind = 'door'
);
