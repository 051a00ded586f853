-- staging.avain_assessments: validated AVAIN-style rows (grain: assessment x goal;
-- unique key: person_key, arviointipvm, tavoitealue).
create schema if not exists staging;
create table if not exists staging.avain_assessments (
    person_key           uuid    not null,
    birth_year           integer not null,
    sex                  varchar not null,
    kuntanumero          varchar not null,
    arviointipvm         date not null,
    arviointikerta       integer not null,
    tavoitealue          varchar not null,
    tilannearvio         tinyint not null,
    tavoitteen_saavutus  tinyint,
    tilannetekijat       varchar,
    palvelut             varchar,
    menetelmat           varchar,
    asiakas_lasna        tinyint not null,
    source_file          varchar not null,
    source_line          bigint not null
);
comment on table staging.avain_assessments is 'Validated AVAIN-style assessment rows, one per assessment and goal; person_key replaces the identity code.';
comment on column staging.avain_assessments.person_key is 'Keyed hash of the identity code (HMAC-SHA-256, first 128 bits, as a UUID), same key as the Kela-style extract.';
comment on column staging.avain_assessments.birth_year is 'Year of birth derived from the identity code.';
comment on column staging.avain_assessments.sex is 'M or F, derived from the identity code.';
comment on column staging.avain_assessments.kuntanumero is 'Municipality doing the assessment.';
comment on column staging.avain_assessments.arviointipvm is 'Assessment date.';
comment on column staging.avain_assessments.arviointikerta is '0 = client plan made (baseline), 1, 2, ... = reviews.';
comment on column staging.avain_assessments.tavoitealue is 'Goal domain code (TOIMEENTULO, ASUMINEN, ...).';
comment on column staging.avain_assessments.tilannearvio is 'Situation in this domain, 0 worst to 10 best.';
comment on column staging.avain_assessments.tavoitteen_saavutus is 'How far the previous goal was achieved, 1-5; NULL at baseline.';
comment on column staging.avain_assessments.tilannetekijat is 'Situation factors, CODE:+ or CODE:- separated by |.';
comment on column staging.avain_assessments.palvelut is 'Service codes used since the last assessment, as delivered.';
comment on column staging.avain_assessments.menetelmat is 'Social-work method codes, as delivered.';
comment on column staging.avain_assessments.asiakas_lasna is '1 if the client was present at the assessment.';
comment on column staging.avain_assessments.source_file is 'Delivered file the row came from.';
comment on column staging.avain_assessments.source_line is 'Line of the row in its file.';
