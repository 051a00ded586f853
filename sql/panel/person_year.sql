-- panel.person_year: cohort x calendar year (grain: person-year; unique key: person_key, year).
-- long_term_receipt = support received in at least 10 months of the year; in_pilot = 1 if the
-- baseline municipality was in the pilot in any month of the year.
create or replace table panel.person_year as
select
    person_key,
    year(month)::integer as year,
    any_value(kuntanumero) as kuntanumero,
    max(in_pilot)::tinyint as in_pilot,
    count(*)::integer as months_observed,
    sum(received)::integer as months_received,
    (sum(received) >= 10 and count(*) = 12)::tinyint as long_term_receipt
from panel.person_month
group by person_key, year(month)
having count(*) = 12
order by person_key, year
