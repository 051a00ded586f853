-- panel.municipality_month: cohort sizes and outcome means by baseline municipality and month
-- (grain: municipality-month; unique key: kuntanumero, month). Cells resting on fewer persons than
-- the disclosure threshold keep their keys but have persons and every mean withheld (NULL).
create or replace table panel.municipality_month as
with cells as (
    select
        pm.kuntanumero,
        pm.month,
        max(pm.in_pilot)::tinyint as in_pilot,
        count(*)::bigint as persons,
        avg(pm.received)::double as received,
        avg(pm.amount_eur)::double as amount_eur,
        avg(pm.reduced_basic_amount)::double as reduced_basic_amount,
        avg(pm.social_work_notification)::double as social_work_notification
    from panel.person_month as pm
    group by pm.kuntanumero, pm.month
)
select
    cells.kuntanumero,
    cells.month,
    (schedule.kuntanumero is not null) as treated,
    cells.in_pilot,
    case when cells.persons >= $min_cell_persons then cells.persons end as persons,
    case when cells.persons >= $min_cell_persons then cells.received end as received,
    case when cells.persons >= $min_cell_persons then cells.amount_eur end as amount_eur,
    case when cells.persons >= $min_cell_persons then cells.reduced_basic_amount end as reduced_basic_amount,
    case when cells.persons >= $min_cell_persons then cells.social_work_notification end as social_work_notification,
    cells.persons < $min_cell_persons as suppressed
from cells
left join panel.pilot_schedule as schedule on schedule.kuntanumero = cells.kuntanumero
order by cells.kuntanumero, cells.month
