-- The inbox, the INSi audit trail, identities, and the outbox.

CREATE TABLE requests (
    request_id      uuid PRIMARY KEY,
    source          text,
    patient_ref     text,
    correlation_id  text,
    body_sha256     bytea,
    state           text NOT NULL
        CHECK (state IN ('received', 'calling', 'done')),
    deliveries      integer NOT NULL DEFAULT 1,
    received_at     timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    outcome         text,
    reason          text,
    result          jsonb,
    completed_at    timestamptz,
    CHECK ((state = 'done') = (outcome IS NOT NULL))
);

CREATE INDEX requests_unfinished ON requests (updated_at)
    WHERE state <> 'done';

-- One row per SOAP exchange, raw bytes as exchanged.
CREATE TABLE insi_calls (
    id              bigserial PRIMARY KEY,
    request_id      uuid NOT NULL REFERENCES requests ON DELETE CASCADE,
    delivery        integer NOT NULL,
    operation       text NOT NULL,
    message_id      text NOT NULL,
    correlation_id  text,
    started_at      timestamptz NOT NULL,
    duration_ms     double precision NOT NULL,
    http_status     integer,
    cr_code         text,
    error_kind      text,
    fault_code      text,
    search          jsonb NOT NULL,
    request_xml     bytea NOT NULL,
    response_xml    bytea,
    certificate     text
);

CREATE INDEX insi_calls_request ON insi_calls (request_id);
CREATE INDEX insi_calls_started ON insi_calls (started_at);

-- Current identity per requesting system and local patient.
CREATE TABLE identities (
    source              text NOT NULL,
    patient_ref         text NOT NULL,
    status              text NOT NULL
        CHECK (status IN ('PROV', 'RECUP', 'VALI', 'QUAL')),
    ins                 text,
    oid                 text,
    ins_type            text,
    history             jsonb NOT NULL DEFAULT '[]',
    traits              jsonb,
    document_type       text,
    document_checked_at date,
    insi_called_at      timestamptz,
    last_request_id     uuid,
    version             integer NOT NULL DEFAULT 1,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, patient_ref)
);

-- Every change of an identity, for the identity-vigilance cell.
CREATE TABLE identity_changes (
    id              bigserial PRIMARY KEY,
    source          text NOT NULL,
    patient_ref     text NOT NULL,
    request_id      uuid NOT NULL,
    changed_at      timestamptz NOT NULL DEFAULT now(),
    old_status      text,
    new_status      text NOT NULL,
    old_ins         text,
    new_ins         text,
    changes         text[] NOT NULL
);

CREATE INDEX identity_changes_patient
    ON identity_changes (source, patient_ref);

-- What happened to a request, step by step (no personal data).
CREATE TABLE request_log (
    id          bigserial PRIMARY KEY,
    request_id  uuid NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    step        text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX request_log_request ON request_log (request_id);

-- Events to publish; a row is sent once the broker confirmed it.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    request_id  uuid,
    event_type  text NOT NULL,
    routing_key text NOT NULL,
    body        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);

CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

CREATE FUNCTION outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ins_worker_outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
