CREATE SOURCE readings (device_id TEXT, ts TIMESTAMP)
  WITH (connector = 'mqtt', url = 'mqtt://localhost', topic = 'a/#', protocol = 'v4');
CREATE SINK out WITH (connector = 'stdout');
INSERT INTO out SELECT * FROM readings;

-- expect: 2:81: option 'protocol': 'v4' is not an MQTT version Eddy speaks; use 'v3.1.1' or 'v5'
