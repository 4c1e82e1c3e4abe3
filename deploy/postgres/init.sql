-- Roles of the laptop stack (docker-compose.yml), run once by the postgres
-- image on an empty data directory. Production uses the same split: the
-- owner role applies migrations (`ins-worker migrate`), the worker role
-- only reads and writes rows.
-- The passwords are for a laptop only; Kubernetes takes the URLs from
-- Secrets.
CREATE ROLE ins_worker_owner LOGIN PASSWORD 'owner-local-only';
CREATE ROLE ins_worker_app LOGIN PASSWORD 'app-local-only';
CREATE DATABASE ins_worker OWNER ins_worker_owner;

\connect ins_worker

-- Whatever the owner creates, schemas included, the worker may use.
ALTER DEFAULT PRIVILEGES FOR ROLE ins_worker_owner
    GRANT USAGE ON SCHEMAS TO ins_worker_app;
ALTER DEFAULT PRIVILEGES FOR ROLE ins_worker_owner
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ins_worker_app;
ALTER DEFAULT PRIVILEGES FOR ROLE ins_worker_owner
    GRANT USAGE, SELECT ON SEQUENCES TO ins_worker_app;
