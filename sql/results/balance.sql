-- results.balance: grain covariate x level per run; unique key (run_id, covariate, level).
-- Pilot vs comparison cohort at baseline, before and after reweighting the comparison cohort to the
-- pilot's composition over the covariate strata (pipeline/balance.py states the weights).
create schema if not exists results;
create table if not exists results.balance (
    run_id                     varchar not null,
    covariate                  varchar not null,
    level                      varchar not null,
    statistic                  varchar not null,
    pilot_persons              bigint,
    comparison_persons         bigint,
    pilot_value                double,
    comparison_value           double,
    comparison_value_weighted  double,
    std_diff                   double,
    std_diff_weighted          double,
    pilot_persons_unmatched    bigint,
    strata                     varchar not null,
    suppressed                 boolean not null default false,
    primary key (run_id, covariate, level)
);
comment on table results.balance is 'Balance of the baseline covariates: pilot vs comparison cohort, unweighted and reweighted to the pilot''s composition, one row per covariate level of a run.';
comment on column results.balance.run_id is 'The run that produced the row (meta.runs.run_id).';
comment on column results.balance.covariate is 'Baseline covariate: a column of panel.cohort named in the configuration''s covariates (age_band, sex, ...).';
comment on column results.balance.level is 'Level of a discrete covariate (e.g. 25-34, F, 10-12); mean for a count such as baseline_receipt_months.';
comment on column results.balance.statistic is 'share (the value columns are shares of the cohort at this level) or mean (means of the covariate).';
comment on column results.balance.pilot_persons is 'Pilot cohort members at this level (for a mean: with the covariate); NULL when suppressed.';
comment on column results.balance.comparison_persons is 'Comparison cohort members at this level (for a mean: with the covariate); NULL when suppressed.';
comment on column results.balance.pilot_value is 'Share (or mean) in the pilot cohort.';
comment on column results.balance.comparison_value is 'Share (or mean) in the comparison cohort, unweighted.';
comment on column results.balance.comparison_value_weighted is 'Share (or mean) in the comparison cohort weighted to the pilot''s composition: a member of stratum s weighs n_pilot(s) / n_comparison(s), the ATT odds weights of a saturated propensity score over the strata.';
comment on column results.balance.std_diff is 'Standardized difference before weighting: (pilot - comparison) / sqrt of the mean of the two cohorts'' variances.';
comment on column results.balance.std_diff_weighted is 'Standardized difference after weighting: (pilot - weighted comparison) over the same unweighted denominator; 0 for discrete strata with common support.';
comment on column results.balance.pilot_persons_unmatched is 'Pilot cohort members at this level whose stratum has no comparison member (no common support: the weighting cannot match them); NULL when suppressed or between 1 and the disclosure threshold.';
comment on column results.balance.strata is 'The covariates whose level combinations form the weighting strata (joined by " x "); none = unweighted.';
comment on column results.balance.suppressed is 'True when the row rests on fewer persons than the disclosure threshold in either cohort, or is withheld so that such a row cannot be recovered from the others; its numbers are then NULL.';
