CREATE SINK alerts WITH (connector = 'pigeon', topic = 'alerts');

-- expect: 1:38: unknown sink connector 'pigeon'; available: amqp, file, kafka, mqtt, nats, postgres, stdout, webhook
