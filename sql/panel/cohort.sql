-- panel.cohort: the intent-to-treat cohort fixed at baseline (grain: person; unique key: person_key).
-- Aged min_age..max_age on the reference date, basic income support granted in a month of the
-- window, and the latest row of the baseline year has a labour-market status of the configured
-- codes (3 = long-term unemployed). Baseline municipality = municipality of that latest row.
-- Baseline covariates (fixed per person, for conditional parallel trends and the balance table):
-- age band, sex, household type and labour-market status of the latest baseline row; months with
-- support granted in the calendar year of the baseline, as a count and as a band; and whether the
-- basic amount was reduced in any month of that year. Not null: every column but age_band (NULL
-- only when the configured age bands leave a gap).
create or replace table panel.cohort as
with baseline_rows as (
    select *
    from staging.kela_income_support
    where month between $panel_start and $baseline_end
),
last_month as (
    select person_key, max(month) as month
    from baseline_rows
    group by person_key
),
latest as (
    -- The latest baseline row of each person, found by its month (one row per person and month in
    -- staging): one grouping by a date instead of an arg_max per column. Birth date, birth year and
    -- sex follow the identity code, so every row of a person carries the same values.
    select
        b.person_key,
        b.kuntanumero as baseline_kuntanumero,
        b.tyomarkkina_asema as baseline_status,
        b.kotitaloustyyppi,
        b.birth_date,
        b.birth_year,
        b.sex
    from baseline_rows as b
    semi join last_month using (person_key, month)
),
supported as (
    select distinct person_key
    from staging.kela_income_support
    where month between $window_start and $window_end and myonnetty_eur > 0
),
baseline_year as (
    -- Every row of the calendar year that ends at the baseline (2017-01 ... 2017-12 by default),
    -- whatever panel_start is: receipt and reductions before the baseline month count too.
    select
        person_key,
        count(*) filter (where myonnetty_eur > 0)::integer as baseline_receipt_months,
        bool_or(perusosan_alennus_pct > 0) as baseline_reduced
    from staging.kela_income_support
    where month between date_trunc('year', $baseline_end::date) and $baseline_end
    group by person_key
),
aged as (
    select
        latest.*,
        year($reference_date::date) - year(birth_date)
            - case when month(birth_date) > month($reference_date::date)
                     or (month(birth_date) = month($reference_date::date) and day(birth_date) > day($reference_date::date))
                   then 1 else 0 end as age_at_reference
    from latest
),
final as (
    select
        aged.person_key,
        aged.baseline_kuntanumero,
        (schedule.kuntanumero is not null) as treated,
        aged.birth_year,
        aged.sex,
        bands.label as age_band,
        aged.kotitaloustyyppi,
        aged.age_at_reference,
        aged.baseline_status as tyomarkkina_asema,
        coalesce(receipt.baseline_receipt_months, 0) as baseline_receipt_months,
        case
            when coalesce(receipt.baseline_receipt_months, 0) = 0 then '0'
            when receipt.baseline_receipt_months <= 3 then '1-3'
            when receipt.baseline_receipt_months <= 6 then '4-6'
            when receipt.baseline_receipt_months <= 9 then '7-9'
            else '10-12'
        end as baseline_receipt_band,
        coalesce(receipt.baseline_reduced, false) as baseline_reduced
    from aged
    join supported using (person_key)
    left join baseline_year as receipt using (person_key)
    left join panel.pilot_schedule as schedule on schedule.kuntanumero = aged.baseline_kuntanumero
    left join panel.age_bands as bands on aged.age_at_reference between bands.min_age and bands.max_age
    where aged.age_at_reference between $min_age and $max_age
      and list_contains($labour_market_codes, aged.baseline_status)
)
select * from final
order by person_key
