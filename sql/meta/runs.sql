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
    message      varchar
);
comment on table meta.runs is 'One row per evaluation run: when, with which code, configuration and input files (names and SHA-256), and how it ended.';
comment on column meta.runs.run_id is 'Identifier of the run; every results row carries it.';
comment on column meta.runs.started_at is 'When the run started (UTC).';
comment on column meta.runs.finished_at is 'When the run finished (UTC); NULL while running or if it was killed.';
comment on column meta.runs.status is 'running, completed or failed.';
comment on column meta.runs.code_version is 'kokeilu version and git commit of the code that ran.';
comment on column meta.runs.config is 'The evaluation configuration in force (JSON); never contains the pseudonymisation key.';
comment on column meta.runs.inputs is 'Input files of the run: name, extract and SHA-256 (JSON list).';
comment on column meta.runs.message is 'One-line reason when the run failed.';
