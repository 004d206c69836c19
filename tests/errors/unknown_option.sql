CREATE SOURCE readings (device_id TEXT, ts TIMESTAMP)
  WITH (connector = 'mqtt', url = 'mqtt://localhost', topic = 'a/#', qoss = 1);

-- expect: 2:70: unknown option 'qoss' for connector 'mqtt'; valid options are: batch_size, ca_file, cert_file, clean_session, client_id, connector, dead_letter, delimiter, format, idle_timeout, keep_alive, key_file, late_sink, linger, max_future, max_log_bytes, max_record_bytes, password, password_env, protocol, qos, receive_maximum, share_group, topic, topic_column, topic_pattern, url, user_properties, username, value_column
