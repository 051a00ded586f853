-- staging.kela_income_support: validated Kela-style rows (grain: person x benefit month;
-- unique key: person_key, month). The identity code never reaches this table.
create schema if not exists staging;
create table if not exists staging.kela_income_support (
    person_key             uuid    not null,
    birth_date             date not null,
    birth_year             integer not null,
    sex                    varchar not null,
    -- high-cardinality: zstd writes it with ~20% less insert CPU than dictionary+FSST, ~8% larger
    kotitalous_id          varchar using compression zstd not null,
    kuntanumero            varchar not null,
    month                  date not null,
    tilastokuukausi        varchar not null,
    kotitaloustyyppi       tinyint not null,
    tyomarkkina_asema      tinyint not null,
    perusosa_eur           decimal(12, 2) not null,
    myonnetty_eur          decimal(12, 2) not null,
    perusosan_alennus_pct  tinyint not null,
    ohjaus_sosiaalityohon  tinyint not null,
    source_file            varchar not null,
    source_line            bigint not null
);
comment on table staging.kela_income_support is 'Validated Kela-style income support rows, one per person and benefit month; person_key replaces the identity code.';
comment on column staging.kela_income_support.person_key is 'Keyed hash of the identity code (HMAC-SHA-256, first 128 bits, as a UUID); the same key gives the same person_key.';
comment on column staging.kela_income_support.birth_date is 'Date of birth derived from the identity code before it was dropped.';
comment on column staging.kela_income_support.birth_year is 'Year of birth derived from the identity code.';
comment on column staging.kela_income_support.sex is 'M or F, from the parity of the individual number of the identity code.';
comment on column staging.kela_income_support.kotitalous_id is 'Household id as delivered.';
comment on column staging.kela_income_support.kuntanumero is 'Municipality of residence that month (3-digit Statistics Finland code).';
comment on column staging.kela_income_support.month is 'Benefit month (first day).';
comment on column staging.kela_income_support.tilastokuukausi is 'Benefit month as delivered (YYYYMM).';
comment on column staging.kela_income_support.kotitaloustyyppi is 'Household type 1-5 (1 single adult ... 5 other).';
comment on column staging.kela_income_support.tyomarkkina_asema is 'Labour-market status 1-6 (3 = long-term unemployed).';
comment on column staging.kela_income_support.perusosa_eur is 'Basic amount of the household share (EUR).';
comment on column staging.kela_income_support.myonnetty_eur is 'Basic income support granted for the month (EUR; 0 = negative decision).';
comment on column staging.kela_income_support.perusosan_alennus_pct is 'Reduction of the basic amount: 0, 20 or 40 percent.';
comment on column staging.kela_income_support.ohjaus_sosiaalityohon is '1 if Kela notified the municipality of a need for social work this month.';
comment on column staging.kela_income_support.source_file is 'Delivered file the row came from.';
comment on column staging.kela_income_support.source_line is 'Line of the row in its file (header = line 1; for Parquet, row number + 1).';
