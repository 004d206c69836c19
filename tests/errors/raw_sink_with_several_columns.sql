CREATE SOURCE readings (device_id TEXT, temp DOUBLE, ts TIMESTAMP)
  WITH (connector = 'mqtt', url = 'mqtt://localhost', topic_pattern = 'plant/{device_id}', format = 'raw');
CREATE SINK out WITH (connector = 'file', path = 'out.txt', format = 'raw');
INSERT INTO out SELECT * FROM readings;

-- expect: 4:1: sink 'out': format = 'raw' writes one value per row: name it with value_column (the rows have device_id, temp, ts)
