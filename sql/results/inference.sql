-- results.inference: grain outcome x estimator x subgroup x method per run;
-- unique key (run_id, outcome, estimator, subgroup, method).
create schema if not exists results;
create table if not exists results.inference (
    run_id      varchar not null,
    outcome     varchar not null,
    estimator   varchar not null,
    subgroup    varchar not null,
    method      varchar not null,
    p_value     double,
    ci_low      double,
    ci_high     double,
    exact       boolean,
    draws       bigint,
    assumes     varchar,
    validity_note varchar,
    suppressed boolean,
    suppression_rule varchar,
    primary key (run_id, outcome, estimator, subgroup, method)
);
-- databases created before these columns
alter table results.inference add column if not exists validity_note varchar;
alter table results.inference add column if not exists suppressed boolean;
alter table results.inference add column if not exists suppression_rule varchar;
comment on table results.inference is 'Every p-value and interval computed for an estimate, one row per method, with what the method assumes.';
comment on column results.inference.run_id is 'The run that produced the row (meta.runs.run_id).';
comment on column results.inference.outcome is 'Outcome code.';
comment on column results.inference.estimator is 'Estimator whose estimate is tested.';
comment on column results.inference.subgroup is 'Subgroup of the estimate (all = whole cohort).';
comment on column results.inference.method is 'Inference method: cv1, cv3, wcr_webb, wcu_webb, wcr_rademacher, randomization, ...';
comment on column results.inference.p_value is 'Two-sided p-value of no effect.';
comment on column results.inference.ci_low is 'Lower bound of the 95% interval (test inversion where applicable).';
comment on column results.inference.ci_high is 'Upper bound of the 95% interval.';
comment on column results.inference.exact is 'True when the p-value is exact under its assumptions (full enumeration), false when it is approximate or Monte Carlo.';
comment on column results.inference.draws is 'Bootstrap draws or randomization assignments used (NULL for analytic methods).';
comment on column results.inference.assumes is 'What the method assumes, in one sentence.';
comment on column results.inference.suppressed is 'True when the estimate this row infers about is withheld (results.did_estimates.suppressed): its p-value and interval are then NULL.';
comment on column results.inference.suppression_rule is 'The disclosure rule that withheld the row: primary (too few persons carry it), complement (another level of its subgroup family was withheld), leave_one_out (the municipality it leaves out is withheld), dominance (a few recipients hold most of a euro sum); NULL when published.';
comment on column results.inference.validity_note is 'Why a method''s p-value and interval are withheld (or what limits them) for this row: set when an analysis has one treated municipality, where CV1, CV3 and the wild cluster bootstraps are not valid; NULL otherwise.';
