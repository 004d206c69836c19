CREATE SOURCE readings (device_id TEXT, ts TIMESTAMP)
  WITH (connector = 'mqtt', url = 'mqtt://localhost', topic = 'a/#', qos = 2);

-- expect: 2:76: option 'qos': 2 is not supported; use 0 or 1
