-- Cold chain: vaccines must stay between 2 and 8 °C. Each refrigerated truck reports its cargo
-- temperature every 10 seconds; a minute whose average leaves the range is an excursion.
--
--   eddy run examples/cold-chain/cold_chain.sql      (from the repository's root)
--
-- replays the recorded readings and writes the excursions to excursions.jsonl; the one garbled
-- reading goes to dead_letters.jsonl with the reason. Point the source at a broker to run it live:
-- connector = 'mqtt', url = 'mqtt://broker:1883', topic = 'trucks/+/cargo'.
CREATE SOURCE cargo (
    truck_id  TEXT,
    temp      DOUBLE,
    door_open BOOLEAN,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '30' SECOND
) WITH (connector = 'file', path = '${READINGS:-examples/cold-chain/readings.jsonl}',
        dead_letter = '${DEAD_LETTERS:-dead_letters.jsonl}');

CREATE SINK excursions WITH (connector = 'file', path = '${OUT:-excursions.jsonl}', mode = 'truncate');

INSERT INTO excursions
SELECT truck_id, window_start, window_end,
       CASE WHEN avg(temp) > 8 THEN 'too warm' ELSE 'too cold' END AS excursion,
       avg(temp) AS avg_temp, min(temp) AS min_temp, max(temp) AS max_temp,
       sum(CASE WHEN door_open THEN 1 ELSE 0 END) AS door_open_readings
FROM TUMBLE(cargo, ts, INTERVAL '1' MINUTE)
GROUP BY truck_id, window_start, window_end
HAVING avg(temp) > 8 OR avg(temp) < 2;
