-- quarantine.avain_assessments: rejected rows (grain: rejected row; unique key: source_file, source_line).
-- Raw fields as text; identity codes masked.
create schema if not exists quarantine;
create table if not exists quarantine.avain_assessments (
    source_file  varchar not null,
    source_line  bigint not null,
    rule         varchar not null,
    detail       varchar not null,
    raw          json not null,
    run_id       varchar not null
);
comment on table quarantine.avain_assessments is 'Rows rejected by the input contract, with the first rule they broke; identity codes masked.';
comment on column quarantine.avain_assessments.source_file is 'Delivered file the row came from.';
comment on column quarantine.avain_assessments.source_line is 'Line of the row in its file (header = line 1).';
comment on column quarantine.avain_assessments.rule is 'Stable rule code (schemas/json/rules.json) of the first rule broken, in precedence order.';
comment on column quarantine.avain_assessments.detail is 'What was wrong, in one line, without the identity code.';
comment on column quarantine.avain_assessments.raw is 'The raw fields of the row as text (JSON object), identity code masked.';
comment on column quarantine.avain_assessments.run_id is 'Run that loaded the file.';
