-- results.robustness: grain outcome x analysis x estimator x variant per run;
-- unique key (run_id, outcome, analysis, estimator, variant).
create schema if not exists results;
create table if not exists results.robustness (
    run_id             varchar not null,
    outcome            varchar not null,
    analysis           varchar not null,
    estimator          varchar not null,
    variant            varchar not null,
    parameter          double,
    estimate           double,
    std_error          double,
    ci_low             double,
    ci_high            double,
    p_value            double,
    n_persons          bigint,
    n_treated_persons bigint,
    n_clusters         integer,
    n_treated_clusters integer,
    suppressed         boolean,
    suppression_rule   varchar,
    primary key (run_id, outcome, analysis, estimator, variant)
);
-- databases created before these columns
alter table results.robustness add column if not exists n_treated_persons bigint;
alter table results.robustness add column if not exists suppression_rule varchar;
comment on table results.robustness is 'How robust the headline is: leave-one-municipality-out estimates, the anticipation rerun and window check, HonestDiD-style sensitivity bounds; one row per analysis variant.';
comment on column results.robustness.run_id is 'The run that produced the row (meta.runs.run_id).';
comment on column results.robustness.outcome is 'Outcome code.';
comment on column results.robustness.analysis is 'leave_one_out_treated, leave_one_out_comparison, anticipation, anticipation_window, honest_relative_magnitudes, honest_smoothness or honest_breakdown.';
comment on column results.robustness.estimator is 'Estimator whose estimate is re-examined (twfe, clean_controls, twfe_event_study).';
comment on column results.robustness.variant is 'What was changed, e.g. without=837, 837 from 2017-11, mbar=0.5.';
comment on column results.robustness.parameter is 'Numeric parameter of the variant (the sensitivity bound Mbar or M); NULL when none.';
comment on column results.robustness.estimate is 'Point estimate under the variant (for a sensitivity bound: the estimate it is centred on; for the breakdown row: the breakdown value).';
comment on column results.robustness.std_error is 'Standard error (cluster-robust by municipality, or placebo-based with one treated municipality).';
comment on column results.robustness.ci_low is 'Lower bound of the 95% interval (for sensitivity rows: of the robust confidence set).';
comment on column results.robustness.ci_high is 'Upper bound of the 95% interval (for sensitivity rows: of the robust confidence set).';
comment on column results.robustness.p_value is 'Two-sided p-value of no effect, where defined.';
comment on column results.robustness.n_persons is 'Cohort members the estimate rests on.';
comment on column results.robustness.n_clusters is 'Municipalities in the estimation.';
comment on column results.robustness.n_treated_clusters is 'Pilot municipalities in the estimation.';
comment on column results.robustness.suppressed is 'True when the row rests on fewer persons than the disclosure threshold; its numbers are then withheld.';
comment on column results.robustness.n_treated_persons is 'Persons that carry the row: the pilot cohort members of its treated municipalities (for a per-municipality row that municipality''s alone); the disclosure threshold applies to them, not to the pooled count.';
comment on column results.robustness.suppression_rule is 'The disclosure rule that withheld the row: primary (too few persons carry it), complement (another level of its subgroup family was withheld), leave_one_out (the municipality it leaves out is withheld), dominance (a few recipients hold most of a euro sum); NULL when published.';
