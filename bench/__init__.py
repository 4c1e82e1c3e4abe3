"""Benchmark harness: the bare baseline and the worker, side by side.

Run ``python -m bench.run`` (``--help`` lists the options); it needs the
local RabbitMQ and PostgreSQL and starts the project's INSi simulator
itself. Modules: ``workload`` (what is published), ``baseline`` (the
bare pipeline), ``services`` (the processes under test), ``bed``
(servers, names, database, CPU groups), ``load`` (publishing and
collecting events), ``procstat`` (CPU and memory from /proc),
``scenarios`` (one measurement each), ``stats`` (medians and
quantiles), ``report`` (the table and the verdicts), ``profile``
(py-spy stacks summed), ``plot`` (optional PNG), ``run`` (the command).
"""
