-- results.did_estimates: grain outcome x estimator x subgroup per run;
-- unique key (run_id, outcome, estimator, subgroup).
create schema if not exists results;
create table if not exists results.did_estimates (
    run_id                  varchar not null,
    outcome                 varchar not null,
    estimator               varchar not null,
    subgroup                varchar not null,
    estimate                double,
    std_error               double,
    ci_low                  double,
    ci_high                 double,
    p_value                 double,
    p_value_wild_bootstrap  double,
    ci_low_wild_bootstrap   double,
    ci_high_wild_bootstrap  double,
    p_value_randomization   double,
    n_obs                   bigint,
    n_persons               bigint,
    n_treated_persons bigint,
    n_clusters              integer,
    n_treated_clusters      integer,
    std_error_cv3           double,
    path                    varchar,
    validity_note varchar,
    suppressed              boolean not null default false,
    suppression_rule        varchar,
    primary key (run_id, outcome, estimator, subgroup)
);
-- databases created before these columns
alter table results.did_estimates add column if not exists validity_note varchar;
alter table results.did_estimates add column if not exists n_treated_persons bigint;
alter table results.did_estimates add column if not exists suppression_rule varchar;
comment on table results.did_estimates is 'Difference-in-differences effects of the pilot: one row per outcome, estimator and subgroup of a run.';
comment on column results.did_estimates.run_id is 'The run that produced the row (meta.runs.run_id).';
comment on column results.did_estimates.outcome is 'Outcome code of evaluation_design.md (received, amount_eur, ...).';
comment on column results.did_estimates.estimator is 'Method: twfe = two-way fixed effects with one pilot dummy; others named by the method.';
comment on column results.did_estimates.subgroup is 'all for the whole cohort, else dimension=level (e.g. municipality=837, age_band=25-34).';
comment on column results.did_estimates.estimate is 'Estimated average effect on the treated, in outcome units.';
comment on column results.did_estimates.std_error is 'Cluster-robust standard error by municipality (CRV1, small-sample corrected).';
comment on column results.did_estimates.ci_low is 'Lower bound of the 95% interval from t(G-1) and the CRV1 standard error.';
comment on column results.did_estimates.ci_high is 'Upper bound of the 95% interval from t(G-1) and the CRV1 standard error.';
comment on column results.did_estimates.p_value is 'Two-sided p-value of no effect from t(G-1) and the CRV1 standard error.';
comment on column results.did_estimates.p_value_wild_bootstrap is 'Restricted wild cluster bootstrap p-value (Webb weights).';
comment on column results.did_estimates.ci_low_wild_bootstrap is 'Lower bound of the wild cluster bootstrap interval (test inversion).';
comment on column results.did_estimates.ci_high_wild_bootstrap is 'Upper bound of the wild cluster bootstrap interval (test inversion).';
comment on column results.did_estimates.p_value_randomization is 'Randomization-inference p-value reassigning the pilot across municipalities, keeping the design.';
comment on column results.did_estimates.n_obs is 'Observations used (person-months, person-years or assessments).';
comment on column results.did_estimates.n_persons is 'Distinct persons in the estimation sample.';
comment on column results.did_estimates.n_clusters is 'Municipalities (clusters) in the estimation sample.';
comment on column results.did_estimates.n_treated_clusters is 'Pilot municipalities in the estimation sample.';
comment on column results.did_estimates.std_error_cv3 is 'Cluster jackknife (CV3) standard error, shown beside CRV1.';
comment on column results.did_estimates.path is 'How it was computed: aggregated (exact, from municipality-month sums) or general (linearmodels).';
comment on column results.did_estimates.suppressed is 'True when the estimate rests on fewer persons than the disclosure threshold and its numbers are withheld.';
comment on column results.did_estimates.n_treated_persons is 'Persons that carry the row: the pilot cohort members of its treated municipalities (for a per-municipality row that municipality''s alone); the disclosure threshold applies to them, not to the pooled count.';
comment on column results.did_estimates.suppression_rule is 'The disclosure rule that withheld the row: primary (too few persons carry it), complement (another level of its subgroup family was withheld), leave_one_out (the municipality it leaves out is withheld), dominance (a few recipients hold most of a euro sum); NULL when published.';
comment on column results.did_estimates.validity_note is 'Why a method''s p-value and interval are withheld (or what limits them) for this row: set when an analysis has one treated municipality, where CV1, CV3 and the wild cluster bootstraps are not valid; NULL otherwise.';
