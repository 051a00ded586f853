-- Staged Kela-style rows per benefit month (grain: month), for the month volume check of every run.
with final as (
    select month, count(*) as rows_staged
    from staging.kela_income_support
    group by month
)

select * from final
order by month
