-- meta.validation_results: every contract and expectation check (grain: run x check).
create schema if not exists meta;
create table if not exists meta.validation_results (
    run_id        varchar not null,
    checked_at    timestamptz not null,
    source        varchar not null,
    check_name    varchar not null,
    target        varchar not null,
    passed        boolean not null,
    observed      bigint,
    unexpected    bigint,
    detail        varchar
);
comment on table meta.validation_results is 'Every contract and expectation check of a run, passed or not, with counts.';
comment on column meta.validation_results.run_id is 'Run that made the check.';
comment on column meta.validation_results.checked_at is 'When the check ran (UTC).';
comment on column meta.validation_results.source is 'contract (row rules and file accounting) or expectation (Great Expectations suite).';
comment on column meta.validation_results.check_name is 'Rule code or expectation name.';
comment on column meta.validation_results.target is 'File name or table the check applied to.';
comment on column meta.validation_results.passed is 'True when no row broke the check.';
comment on column meta.validation_results.observed is 'Rows examined.';
comment on column meta.validation_results.unexpected is 'Rows that broke the check.';
comment on column meta.validation_results.detail is 'What was checked or found, in one line.';
