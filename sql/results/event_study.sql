-- results.event_study: grain outcome x estimator x event_time per run;
-- unique key (run_id, outcome, estimator, event_time).
create schema if not exists results;
create table if not exists results.event_study (
    run_id     varchar not null,
    outcome    varchar not null,
    estimator  varchar not null,
    event_time integer not null,
    estimate   double,
    std_error  double,
    ci_low     double,
    ci_high    double,
    primary key (run_id, outcome, estimator, event_time)
);
comment on table results.event_study is 'Dynamic effects relative to each pilot municipality''s start month (event study): leads test pre-trends, lags show persistence.';
comment on column results.event_study.run_id is 'The run that produced the row (meta.runs.run_id).';
comment on column results.event_study.outcome is 'Outcome code.';
comment on column results.event_study.estimator is 'Method of the event study.';
comment on column results.event_study.event_time is 'Months relative to the municipality''s pilot start (0 = first pilot month; -1 is the reference).';
comment on column results.event_study.estimate is 'Estimated effect at this event time, relative to event time -1.';
comment on column results.event_study.std_error is 'Cluster-robust standard error by municipality.';
comment on column results.event_study.ci_low is 'Lower bound of the 95% interval (t(G-1)).';
comment on column results.event_study.ci_high is 'Upper bound of the 95% interval (t(G-1)).';
