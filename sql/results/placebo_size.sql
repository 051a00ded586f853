-- results.placebo_size: grain outcome x method per run; unique key (run_id, outcome, method).
create schema if not exists results;
create table if not exists results.placebo_size (
    run_id         varchar not null,
    outcome        varchar not null,
    method         varchar not null,
    n_placebos     integer,
    rejection_rate double,
    primary key (run_id, outcome, method)
);
comment on table results.placebo_size is 'How often each inference method rejects at 5% in placebo pilots among comparison municipalities, where the true effect is zero (ideal: 0.05).';
comment on column results.placebo_size.run_id is 'The run that produced the row (meta.runs.run_id).';
comment on column results.placebo_size.outcome is 'Outcome code.';
comment on column results.placebo_size.method is 'Inference method.';
comment on column results.placebo_size.n_placebos is 'Number of placebo pilots.';
comment on column results.placebo_size.rejection_rate is 'Share of placebo pilots rejected at the 5% level.';
