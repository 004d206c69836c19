-- SUBSET union variables in MEASURES and in DEFINE, PERMUTE (every order, preferred in the
-- lexicographic order of the list, as the standard says), the quantifier {,} (both bounds omitted:
-- *), the empty pattern (), and AFTER MATCH SKIP TO var (= TO LAST var).
-- Expected rows in expected.jsonl are worked out by hand from the standard's rules.
CREATE SOURCE readings (
    device_id TEXT,
    temp      BIGINT,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'input.jsonl');

CREATE SOURCE perm (
    device_id TEXT,
    temp      BIGINT,
    ts        TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = 'perm.jsonl');

CREATE SINK out WITH (connector = 'file', path = '${OUT}', mode = 'truncate');

-- The V-shape of Trino's documentation (https://trino.io/docs/current/sql/match-recognize.html)
-- over temps 100 90 80 85 95 110 120 50: A = 100, B = 90 80, C = 85 95 (not above A), D = 110 120;
-- CLASSIFIER(U) is the variable of U's last row, D.
INSERT INTO out
SELECT 'subset_measures' AS q, * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES A.temp AS starting, LAST(B.temp) AS bottom, LAST(U.temp) AS top,
             FIRST(U.temp) AS first_u, COUNT(U.*) AS u_rows,
             CLASSIFIER(U) AS u_var, CLASSIFIER(B) AS b_var
    ONE ROW PER MATCH
    AFTER MATCH SKIP PAST LAST ROW
    PATTERN (A B+ C+ D+)
    SUBSET U = (C, D)
    DEFINE B AS temp < PREV(temp),
           C AS temp > PREV(temp) AND temp <= A.temp,
           D AS temp > PREV(temp)
);

-- Q below the average of the match so far, itself included (PQ holds P and Q): the most P rows
-- that work are 100 90 80, then Q = 85 < 88.75 (95 < 90 and 110 < 93.3 fail; 120 is no P).
INSERT INTO out
SELECT 'subset_define' AS q, * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(PQ.temp) AS first_pq, LAST(PQ.temp) AS last_pq, COUNT(PQ.*) AS pq_rows,
             CLASSIFIER() AS last_var
    PATTERN (P+ Q)
    SUBSET PQ = (P, Q)
    DEFINE P AS temp < 115,
           Q AS temp < AVG(PQ.temp) AND CLASSIFIER(PQ) = 'Q' AND CLASSIFIER(P) = 'P'
);

-- temps 120 70 50 65 30 110 20: H L M fails at 70, H M L matches 120 70 50; then M L H matches
-- 65 30 110; 20 alone does not.
INSERT INTO out
SELECT 'permute' AS q, * FROM perm MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES MATCH_NUMBER() AS m, CLASSIFIER() AS c
    ALL ROWS PER MATCH
    PATTERN (PERMUTE(H, L, M))
    DEFINE H AS temp >= 100, L AS temp < 60, M AS temp >= 60 AND temp < 100
);

-- Both orders fit every pair: X Y, the first in the list, is preferred.
INSERT INTO out
SELECT 'permute_order' AS q, * FROM perm MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES MATCH_NUMBER() AS m, CLASSIFIER() AS c
    ALL ROWS PER MATCH
    PATTERN (PERMUTE(X, Y))
    DEFINE X AS temp > 0, Y AS temp > 0
);

-- A{,} is A*: B = 100; A = 90 80 85 95, B = 110; B = 120; 50 has no B after it.
INSERT INTO out
SELECT 'both_bounds_omitted' AS q, * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(ts) AS started, COUNT(A.*) AS a_rows
    PATTERN (A{,} B)
    DEFINE A AS temp < 100, B AS temp >= 100
);

-- A above 100, or the empty pattern: an empty match at each row but 110 and 120.
INSERT INTO out
SELECT 'empty_pattern' AS q, * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES MATCH_NUMBER() AS m, COUNT(*) AS n
    PATTERN (A | ())
    DEFINE A AS temp > 100
);

-- A = 100, B = 90 80; skipping to the last B (80, no A) rather than the first (90, which would
-- match 90 80 again); then A = 120, B = 50.
INSERT INTO out
SELECT 'skip_to_var' AS q, * FROM readings MATCH_RECOGNIZE (
    PARTITION BY device_id
    ORDER BY ts
    MEASURES FIRST(ts) AS started, COUNT(B.*) AS b_rows
    AFTER MATCH SKIP TO B
    PATTERN (A B+)
    DEFINE A AS temp > 85, B AS temp < PREV(temp)
);
