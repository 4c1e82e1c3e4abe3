"""PostgreSQL: migrations, the inbox and outcome store, the outbox."""
