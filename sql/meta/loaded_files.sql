-- meta.loaded_files: manifest of loaded files (grain: loaded file; unique key: extract, file_name).
create schema if not exists meta;
create table if not exists meta.loaded_files (
    extract        varchar not null,
    file_name      varchar not null,
    period         varchar not null,
    sha256         varchar not null,
    rows_in        bigint not null,
    rows_staged    bigint not null,
    rows_quarantined bigint not null,
    loaded_at      timestamptz not null,
    run_id         varchar not null,
    override_reason varchar,
    primary key (extract, file_name)
);
-- databases created before overrides were recorded
alter table meta.loaded_files add column if not exists override_reason varchar;
comment on table meta.loaded_files is 'Manifest of the files in staging: one row per delivered file currently loaded; a re-delivered file replaces its row.';
comment on column meta.loaded_files.extract is 'kela or avain.';
comment on column meta.loaded_files.file_name is 'File name as delivered.';
comment on column meta.loaded_files.period is 'What the file covers: YYYYMM (kela) or kuntanumero_YYYY (avain).';
comment on column meta.loaded_files.sha256 is 'SHA-256 of the file bytes; the same hash is not loaded twice.';
comment on column meta.loaded_files.rows_in is 'Data rows in the file.';
comment on column meta.loaded_files.rows_staged is 'Rows that passed the contract and are in staging.';
comment on column meta.loaded_files.rows_quarantined is 'Rows rejected into quarantine; rows_in = rows_staged + rows_quarantined.';
comment on column meta.loaded_files.loaded_at is 'When the file was loaded (UTC).';
comment on column meta.loaded_files.run_id is 'Run that loaded the file.';
comment on column meta.loaded_files.override_reason is 'NULL, or the guard a user overrode to load this file (month_shrinks, file_no_rows) and the reason they gave with --allow-shrink.';
