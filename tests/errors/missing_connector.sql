CREATE SINK alerts WITH (path = 'alerts.jsonl');

-- expect: 1:1: missing option 'connector': a sink needs WITH (connector = '...'), one of: amqp, file, kafka, mqtt, nats, postgres, stdout, webhook
