CREATE SINK alerts WITH (connector = 'kafka', topic = 'alerts');

-- expect: 1:38: unknown sink connector 'kafka'; available: file, mqtt, stdout
