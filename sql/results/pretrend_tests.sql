-- results.pretrend_tests: grain outcome x estimator per run; unique key (run_id, outcome, estimator).
create schema if not exists results;
create table if not exists results.pretrend_tests (
    run_id    varchar not null,
    outcome   varchar not null,
    estimator varchar not null,
    statistic double,
    df        varchar,
    p_value   double,
    p_value_randomization double,
    draws     integer,
    primary key (run_id, outcome, estimator)
);
comment on table results.pretrend_tests is 'Joint test that all event-study leads are zero (parallel pre-trends), with small-cluster degrees of freedom.';
comment on column results.pretrend_tests.run_id is 'The run that produced the row (meta.runs.run_id).';
comment on column results.pretrend_tests.outcome is 'Outcome code.';
comment on column results.pretrend_tests.estimator is 'Method of the event study tested.';
comment on column results.pretrend_tests.statistic is 'Test statistic (F).';
comment on column results.pretrend_tests.df is 'Degrees of freedom of the reference distribution, e.g. "11, 30".';
comment on column results.pretrend_tests.p_value is 'p-value of the joint test from F(L, G-1): over-rejects with few treated municipalities (see p_value_randomization).';
comment on column results.pretrend_tests.p_value_randomization is 'p-value of the same statistic when the pilot schedules are reassigned to other municipalities at random (number treated and schedules kept); valid with few treated municipalities.';
comment on column results.pretrend_tests.draws is 'Seeded reassignments behind p_value_randomization.';
