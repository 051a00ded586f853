-- meta.key_fingerprint: which pseudonymisation key built this database (grain: database; one row).
create schema if not exists meta;
create table if not exists meta.key_fingerprint (
    algorithm    varchar not null,
    salt         varchar not null,
    fingerprint  varchar not null,
    recorded_at  timestamptz not null,
    run_id       varchar not null
);
comment on table meta.key_fingerprint is 'A keyed fingerprint of the pseudonymisation key that built this database (never the key): a load, run or validate --db under another key is refused before it writes anything.';
comment on column meta.key_fingerprint.algorithm is 'How the fingerprint is derived from the key and the salt (scrypt parameters).';
comment on column meta.key_fingerprint.salt is 'Random salt of the fingerprint, hex.';
comment on column meta.key_fingerprint.fingerprint is 'scrypt(key, salt), hex: checks a key without revealing it.';
comment on column meta.key_fingerprint.recorded_at is 'When the first load recorded it (UTC).';
comment on column meta.key_fingerprint.run_id is 'The run (or validate --db) of that first load.';
