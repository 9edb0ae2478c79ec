"""lifeboat's local AWS: moto in server mode on 127.0.0.1, extended in-process with the AWS
behaviour lifeboat depends on and moto lacks (see patches.py), an event outbox, a ledger and a
control API (see app.py). Test infrastructure, not a product."""
