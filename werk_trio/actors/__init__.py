"""The worker runtime: a nursery of actors that own their state and talk
through memory channels (docs/architecture.md opens with the wiring diagram).

* ``listener`` -- LISTEN for NOTIFYs; nudges the poller.
* ``poller`` -- claims up to the free runner slots; hands rows to the runners.
* ``runner`` -- ``concurrency`` of them: one job at a time through the executor;
  the end of the attempt is classified by ``classify.classify`` (pure).
* ``completer`` -- batches outcomes into one pipelined transaction; returns
  once every runner has gone.
* ``callbacks`` -- runs ``_on_success`` / ``_on_failure`` / ``_on_stopped``.
* ``heartbeater``, ``sweeper``, ``abort_watcher``, ``signals`` -- timers and signals.

Shared pieces: ``wiring`` (WorkerSettings, Db, Wake, DbHealth, Pulse) and
``ledger`` (the jobs a worker holds; its docstring says who may call what).
``werk_trio.worker`` builds and starts them; nothing here imports it.
"""
