-- panel.person_month: balanced cohort x month panel (grain: person-month; unique key: person_key, month).
-- Months without a register row are months without support: outcomes 0. Treatment follows the
-- baseline municipality (intent to treat) and the configured pilot schedule.
-- Rows are stored in the order the parallel join yields them, not sorted: sorting 9.6 million
-- national-scale rows by (person_key, month) was a quarter of the panels' time, and nothing reads
-- the table in its stored order (the estimates sum exact integer cents). Query with `order by`.
create or replace table panel.person_month as
with months as (
    select cast(range as date) as month
    from range($panel_start::date, (select max(month) from staging.kela_income_support) + interval 1 month,
               interval 1 month)
)
select
    cohort.person_key,
    months.month,
    cohort.baseline_kuntanumero as kuntanumero,
    case when months.month between schedule.start_month and schedule.end_month then 1 else 0 end::tinyint as in_pilot,
    case when schedule.start_month is null then null
         else (year(months.month) - year(schedule.start_month)) * 12 + month(months.month) - month(schedule.start_month)
    end::integer as event_time,
    coalesce(k.myonnetty_eur > 0, false)::tinyint as received,
    coalesce(k.myonnetty_eur, 0)::double as amount_eur,
    coalesce(k.perusosan_alennus_pct > 0, false)::tinyint as reduced_basic_amount,
    coalesce(k.ohjaus_sosiaalityohon, 0)::tinyint as social_work_notification
from panel.cohort as cohort
cross join months
left join panel.pilot_schedule as schedule on schedule.kuntanumero = cohort.baseline_kuntanumero
left join staging.kela_income_support as k
    on k.person_key = cohort.person_key and k.month = months.month
