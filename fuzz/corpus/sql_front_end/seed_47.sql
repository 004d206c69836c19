CREATE SOURCE readings (device_id TEXT, temp DOUBLE)
  WITH (connector = 'file', path = 'readings.jsonl');
CREATE TABLE limits (device_id TEXT, max_temp DOUBLE)
  WITH (connector = 'file', path = 'limits.csv', refresh_every = '1 minute');
CREATE SINK alerts WITH (connector = 'stdout');

INSERT INTO alerts
SELECT r.device_id FROM readings r JOIN limits l ON r.device_id = l.device_id;

-- expect: 4:50: unknown option 'refresh_every' for connector 'file'; valid options are: connector, delimiter, format, path, refresh
