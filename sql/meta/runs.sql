-- meta.runs: one row per evaluation run (grain: run; unique key: run_id).
create schema if not exists meta;
create table if not exists meta.runs (
    run_id       varchar primary key,
    started_at   timestamptz not null,
    finished_at  timestamptz,
    status       varchar not null,
    code_version varchar not null,
    config       json not null,
    inputs       json not null,
    message      varchar,
    host         varchar,
    pid          integer,
    process_started_at timestamptz
);
-- databases created before runs kept their process
alter table meta.runs add column if not exists host varchar;
alter table meta.runs add column if not exists pid integer;
alter table meta.runs add column if not exists process_started_at timestamptz;
comment on table meta.runs is 'One row per evaluation run: when, with which code, configuration and input files (names and SHA-256), and how it ended.';
comment on column meta.runs.run_id is 'Identifier of the run; every results row carries it.';
comment on column meta.runs.started_at is 'When the run started (UTC).';
comment on column meta.runs.finished_at is 'When the run finished (UTC), or when a later run noticed it was abandoned; NULL while running.';
comment on column meta.runs.status is 'running, completed, failed, or abandoned (its process ended without finishing the run, as a later run on the same host noticed).';
comment on column meta.runs.code_version is 'kokeilu version and git commit of the code that ran.';
comment on column meta.runs.config is 'The evaluation configuration in force (JSON); never contains the pseudonymisation key.';
comment on column meta.runs.inputs is 'Input files of the run: name, extract and SHA-256 (JSON list).';
comment on column meta.runs.message is 'One-line reason when the run failed.';
comment on column meta.runs.host is 'Host name of the process that ran it (with pid and process_started_at: whether a running run is still alive).';
comment on column meta.runs.pid is 'Process id of the process that ran it.';
comment on column meta.runs.process_started_at is 'When that process started (UTC): tells a reused process id from the run''s own.';
