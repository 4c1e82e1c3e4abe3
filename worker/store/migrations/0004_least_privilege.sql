-- Least privilege: the worker's role reads and writes rows, nothing more.
--
-- Two roles, made by the DBA (docs/operating.md): the owner, which runs
-- `ins-worker migrate` (and `ins-worker purge`), owns every object and
-- alone may change the schema; and `ins_worker_app`, which the running
-- worker connects with. ins_worker_grant_app() sets the app role's
-- privileges from nothing, table by table, so that broader defaults
-- (ALTER DEFAULT PRIVILEGES) do not survive it. A later migration that
-- adds a table replaces this function with the table added and calls it
-- again.

CREATE FUNCTION ins_worker_grant_app(app text DEFAULT 'ins_worker_app')
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    here text := current_schema();
BEGIN
    IF app = current_user THEN
        -- One role for everything: revoking would lock the owner out.
        RAISE NOTICE 'ins_worker_grant_app: % owns the schema, skipped', app;
        RETURN;
    END IF;

    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I',
                   here, app);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %I',
                   here, app);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', here, app);

    -- The inbox, the identities and the outbox: read, add and change
    -- rows; never delete one (the purge does, as the owner).
    EXECUTE format(
        'GRANT SELECT, INSERT, UPDATE ON %I.requests, %I.identities,'
        ' %I.outbox TO %I', here, here, here, app);

    -- The audit trail is append-only for the worker: it writes it but
    -- neither reads the raw exchanges back nor rewrites them.
    EXECUTE format(
        'GRANT INSERT ON %I.insi_calls, %I.request_log,'
        ' %I.identity_changes TO %I', here, here, here, app);

    -- The rate limiter's slots come and go: the only table it deletes in.
    EXECUTE format(
        'GRANT SELECT, INSERT, UPDATE, DELETE ON %I.insi_rate_slots TO %I',
        here, app);

    -- Start-up refuses a schema with pending migrations: it reads the list.
    EXECUTE format('GRANT SELECT ON %I.schema_migrations TO %I', here, app);

    -- nextval() for the bigserial ids; no setval(), no currval() reads.
    EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO %I',
                   here, app);
END;
$$;

-- Security invoker anyway; nobody but the owner has a use for it.
REVOKE ALL ON FUNCTION ins_worker_grant_app(text) FROM PUBLIC;

-- Nothing for roles that were given nothing.
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM PUBLIC',
                   current_schema());
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM PUBLIC',
                   current_schema());
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC',
                   current_schema());
END;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ins_worker_app') THEN
        PERFORM ins_worker_grant_app('ins_worker_app');
    ELSE
        RAISE NOTICE 'role ins_worker_app does not exist: no grants made; '
            'create it, then run SELECT ins_worker_grant_app();';
    END IF;
END;
$$;
