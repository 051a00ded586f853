-- panel.avain_assessment: one row per AVAIN-style assessment (grain: assessment;
-- unique key: person_key, arviointipvm). Treatment by the assessing municipality and date.
create or replace table panel.avain_assessment as
select
    a.person_key,
    a.arviointipvm,
    date_trunc('month', a.arviointipvm)::date as month,
    any_value(a.kuntanumero) as kuntanumero,
    any_value(a.arviointikerta) as arviointikerta,
    (any_value(schedule.kuntanumero) is not null) as treated,
    max(case when a.arviointipvm between schedule.start_month
             and (schedule.end_month + interval 1 month - interval 1 day) then 1 else 0 end)::tinyint as in_pilot,
    case when year(a.arviointipvm) < $first_pilot_year then 'before'
         when year(a.arviointipvm) <= $last_pilot_year then 'during'
         else 'after' end as period,
    count(*)::integer as goals,
    avg(a.tilannearvio)::double as avain_situation,
    case when any_value(a.arviointikerta) > 0
         then avg(case when a.tavoitteen_saavutus >= 4 then 1.0 else 0.0 end) end::double as avain_goal_achieved,
    min(a.asiakas_lasna)::tinyint as client_present,
    (c.person_key is not null) as in_cohort
from staging.avain_assessments as a
left join panel.pilot_schedule as schedule on schedule.kuntanumero = a.kuntanumero
left join panel.cohort as c on c.person_key = a.person_key
group by a.person_key, a.arviointipvm, c.person_key
order by a.person_key, a.arviointipvm
