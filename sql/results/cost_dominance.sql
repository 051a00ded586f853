-- The share of the euros granted to the pilot cohort in its pilot months that its $n largest recipients hold
-- (grain: one row), for the (n, k) dominance rule of the cost view's euro sums.
with per_person as (
    select person_key, sum(amount_eur) as euros
    from panel.person_month
    where in_pilot = 1
    group by person_key
),

ranked as (
    select euros, row_number() over (order by euros desc) as position
    from per_person
),

final as (
    select sum(euros) filter (where position <= $n) / nullif(sum(euros), 0) as largest_share
    from ranked
)

select * from final
