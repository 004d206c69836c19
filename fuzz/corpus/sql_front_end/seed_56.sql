CREATE SOURCE readings (device_id TEXT, payload JSON, ts TIMESTAMP)
  WITH (connector = 'file', path = 'r.jsonl');

-- expect: 1:41: column 'payload': unsupported type JSON; use TEXT, DOUBLE, FLOAT, BIGINT, INT, SMALLINT, BOOLEAN, TIMESTAMP or DATE
