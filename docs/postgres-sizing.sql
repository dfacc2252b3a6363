-- Bytes per stored point in PostgreSQL, for docs/scaling.md: the series and points tables
-- exactly as src/store/postgres.rs creates them, 2,000 series x 720 hourly points inserted
-- hour by hour (as polls arrive). Run: psql "$URL" -f docs/postgres-sizing.sql
DROP SCHEMA IF EXISTS sizing CASCADE; CREATE SCHEMA sizing; SET search_path = sizing;
CREATE TABLE series (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    canonical TEXT COLLATE "C" NOT NULL UNIQUE,
    source TEXT COLLATE "C" NOT NULL, account TEXT COLLATE "C" NOT NULL, metric TEXT COLLATE "C" NOT NULL,
    labels TEXT NOT NULL, kind TEXT NOT NULL, unit TEXT NOT NULL);
CREATE INDEX series_by_source_metric ON series (source, metric);
CREATE INDEX series_by_account_metric ON series (account, metric);
CREATE TABLE points (
    series_id BIGINT NOT NULL REFERENCES series (id), at_ms BIGINT NOT NULL, last_seen_ms BIGINT NOT NULL,
    period_start_ms BIGINT, period_end_ms BIGINT, value NUMERIC NOT NULL, PRIMARY KEY (series_id, at_ms));
-- 2,000 series (100 accounts x 20 line items), as the bench world names them.
INSERT INTO series (canonical, source, account, metric, labels, kind, unit)
SELECT format('rs/acct-%s/line_item_spend_period_to_date{currency="USD",item="ITEM-%s"}', a, i), 'rs', 'acct-' || a,
       'line_item_spend_period_to_date', format('{"currency":"USD","item":"ITEM-%s"}', i), 'period_to_date', 'money:USD'
FROM generate_series(1, 100) a, generate_series(1, 20) i;
-- 30 days of hourly points each: a growing period-to-date amount with cents, one period.
INSERT INTO points
SELECT s.id, 1790000000000 + h::bigint * 3600000, 1790000000000 + h::bigint * 3600000, 1788000000000, 1790600000000,
       round((h * (1.37 + s.id % 17) + s.id % 100)::numeric, 2)
FROM series s, generate_series(0, 719) h ORDER BY h, s.id;  -- time-major, as polls arrive
VACUUM ANALYZE points; VACUUM ANALYZE series;
SELECT (SELECT count(*) FROM points) AS points,
       pg_table_size('points') AS heap_bytes, pg_indexes_size('points') AS index_bytes,
       pg_total_relation_size('points') AS total_bytes,
       round(pg_total_relation_size('points')::numeric / (SELECT count(*) FROM points), 1) AS bytes_per_point,
       pg_total_relation_size('series') AS series_bytes,
       round(pg_total_relation_size('series')::numeric / (SELECT count(*) FROM series), 1) AS bytes_per_series;
DROP SCHEMA sizing CASCADE;
