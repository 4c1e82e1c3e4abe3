-- Calls to INSi granted per time slot, shared by every worker process.

CREATE TABLE insi_rate_slots (
    slot    bigint PRIMARY KEY,
    used    integer NOT NULL
);
