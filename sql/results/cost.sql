-- results.cost: grain outcome x estimator per run; unique key (run_id, outcome, estimator).
create schema if not exists results;
create table if not exists results.cost (
    run_id                   varchar not null,
    outcome                  varchar not null,
    estimator                varchar not null,
    effect_per_person_month  double,
    pilot_person_months      bigint,
    treated_persons          bigint,
    effect_per_member        double,
    effect_per_member_ci_low double,
    effect_per_member_ci_high double,
    effect_total             double,
    effect_total_ci_low      double,
    effect_total_ci_high     double,
    observed_total           double,
    counterfactual_total     double,
    change_share             double,
    largest_share double,
    suppressed               boolean,
    suppression_rule         varchar,
    primary key (run_id, outcome, estimator)
);
-- databases created before these columns
alter table results.cost add column if not exists largest_share double;
alter table results.cost add column if not exists suppression_rule varchar;
comment on table results.cost is 'Cost view: the estimated change in income-support euros per treated cohort member and in total over the pilot months.';
comment on column results.cost.run_id is 'The run that produced the row (meta.runs.run_id).';
comment on column results.cost.outcome is 'Outcome code (amount_eur: euros of basic income support granted a month).';
comment on column results.cost.estimator is 'Estimator whose per-person-month effect is scaled up.';
comment on column results.cost.effect_per_person_month is 'Estimated effect in euros per treated cohort member and pilot month (results.did_estimates.estimate).';
comment on column results.cost.pilot_person_months is 'Treated cohort person-months in pilot months.';
comment on column results.cost.treated_persons is 'Cohort members whose baseline municipality is a pilot municipality.';
comment on column results.cost.effect_per_member is 'Estimated change in euros per treated cohort member over the pilot months (effect x pilot person-months / treated persons).';
comment on column results.cost.effect_per_member_ci_low is 'Lower bound of the 95% interval of effect_per_member (the estimator''s interval, scaled).';
comment on column results.cost.effect_per_member_ci_high is 'Upper bound of the 95% interval of effect_per_member.';
comment on column results.cost.effect_total is 'Estimated change in euros in total over the pilot months (effect x pilot person-months).';
comment on column results.cost.effect_total_ci_low is 'Lower bound of the 95% interval of effect_total.';
comment on column results.cost.effect_total_ci_high is 'Upper bound of the 95% interval of effect_total.';
comment on column results.cost.observed_total is 'Euros actually granted to treated cohort members in pilot months.';
comment on column results.cost.counterfactual_total is 'Euros they would have been granted without the pilot, by the estimate (observed_total - effect_total).';
comment on column results.cost.change_share is 'effect_total / counterfactual_total: the relative change in spending.';
comment on column results.cost.suppressed is 'True when the row rests on fewer persons than the disclosure threshold; its numbers are then withheld.';
comment on column results.cost.largest_share is 'Share of the granted euros of the pilot months (observed_total) held by the largest recipients (disclosure.dominance_n of them): the (n, k) dominance rule withholds the euro sums when it exceeds disclosure.dominance_k.';
comment on column results.cost.suppression_rule is 'The disclosure rule that withheld the row: primary (too few persons carry it), complement (another level of its subgroup family was withheld), leave_one_out (the municipality it leaves out is withheld), dominance (a few recipients hold most of a euro sum); NULL when published.';
