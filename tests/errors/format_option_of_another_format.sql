CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP)
  WITH (connector = 'mqtt', url = 'mqtt://localhost', topic = 'a/#', value_column = 'temp');
CREATE SINK out WITH (connector = 'stdout');
INSERT INTO out SELECT * FROM readings;

-- expect: 2:85: option 'value_column': only format = 'raw' fills one column from the whole record
