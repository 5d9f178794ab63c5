"""Cream's engines. Each mode's module (``search`` for ``train``, ``retrain``, ``evaluate`` for
``test``) exposes ``run(ctx: lib.engine.common.RunContext) -> dict`` returning the run's final
metrics; ``lib.engine.common.prepare_run`` builds the context. Modules are imported on demand."""
