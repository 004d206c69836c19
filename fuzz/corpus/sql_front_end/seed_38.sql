CREATE SINK alerts WITH (connector = 'file');

-- expect: 1:1: missing option 'path', which connector 'file' requires
