CREATE SOURCE xyz_skip (
    symbol  TEXT,
    rowtime TIMESTAMP,
    price   BIGINT,
    tax     BIGINT,
    WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND
) WITH (connector = 'file', path = 'xyz_skip.jsonl');
CREATE SINK out WITH (connector = 'stdout');

-- Flink's AFTER MATCH SKIP TO LAST A example (match_recognize.md): a match of (A+ C) may map one
-- row to A, its first, and the standard makes skipping there an error.
INSERT INTO out
SELECT *
FROM xyz_skip
    MATCH_RECOGNIZE(
        PARTITION BY symbol
        ORDER BY rowtime
        MEASURES
            SUM(A.price) AS sumPrice,
            FIRST(rowtime) AS startTime,
            LAST(rowtime) AS endTime
        ONE ROW PER MATCH
        AFTER MATCH SKIP TO LAST A
        PATTERN (A+ C)
        DEFINE
            A AS SUM(A.price) < 30
    );

-- expect: 23:34: AFTER MATCH SKIP TO LAST A: a match of this pattern may map no row to A, or only its first row, and the SQL standard makes skipping there an error; skip to a variable every match maps after its first row
