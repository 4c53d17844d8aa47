"""OpenTelemetry tracing (the ``tracing`` extra: ``opentelemetry-api`` only).

``instrument(app)``: an enqueue made inside a span carries that span's trace
context in the job's ``meta`` (under ``"otel"``, as the globally configured
propagator writes it: W3C ``traceparent``/``tracestate`` by default).

``instrument_worker(worker)``: the worker runs each job inside a span named
after its function, a child of the enqueuer's span (a root span when the job
carries none), with the attributes ``werk.queue``, ``werk.attempt``,
``werk.job_id`` and ``werk.outcome`` (``complete``, ``retry``, ``failed``,
``timeout``, ``aborted``, ``requeued``). The span is opened and closed by the
runner in the worker process around the whole attempt, so it exists in every
executor; inline (Trio) handlers also see it as their current span.

Which SDK, exporter and sampler to use is the application's choice, made with
``opentelemetry.trace.set_tracer_provider`` (or pass ``tracer_provider=``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, JobTimeout, WorkerShutdown

if TYPE_CHECKING:
    from .app import Werk
    from .jobs import Context, EnqueueParams
    from .worker import Worker

__all__ = ["META_KEY", "instrument", "instrument_worker"]

#: The ``meta`` key that carries the trace context.
META_KEY = "otel"
_SCOPE = "werk_trio"


def _otel() -> Any:
    try:
        from opentelemetry import context, propagate, trace
    except ImportError:
        raise ConfigError(
            "tracing needs opentelemetry-api: pip install 'werk-trio[tracing]'"
        ) from None
    return context, propagate, trace


def instrument(app: Werk) -> None:
    """Put the current trace context into the ``meta`` of every job ``app`` enqueues."""
    from .app import Werk

    if not isinstance(app, Werk):
        raise ConfigError(f"instrument() needs a Werk, got {type(app).__name__}")
    _context, propagate, trace = _otel()

    def inject(params: EnqueueParams) -> None:
        if not trace.get_current_span().get_span_context().is_valid:
            return
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if carrier:
            params.meta = {**(params.meta or {}), META_KEY: carrier}

    app.register_before_enqueue(inject)


def _outcome(ctx: Context) -> str:
    exc, job = ctx.exception, ctx.job
    if exc is None:
        return "complete"
    if isinstance(exc, WorkerShutdown):
        return "requeued"
    if str(exc).startswith("aborted by request"):
        return "aborted"
    if isinstance(exc, JobTimeout):
        return "timeout"
    return "retry" if job.attempts < job.max_attempts else "failed"


def instrument_worker(worker: Worker, *, tracer_provider: Any = None) -> None:
    """Run every job of ``worker`` inside a span (see the module docstring)."""
    from .worker import Worker

    if not isinstance(worker, Worker):
        raise ConfigError(f"instrument_worker() needs a Worker, got {type(worker).__name__}")
    context, propagate, trace = _otel()
    tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
    open_spans: dict[uuid.UUID, tuple[Any, Any]] = {}

    def begin(ctx: Context) -> None:
        job = ctx.job
        carrier = (job.meta or {}).get(META_KEY)
        parent = propagate.extract(carrier) if isinstance(carrier, dict) else context.Context()
        span = tracer.start_span(
            job.function, context=parent, kind=trace.SpanKind.CONSUMER,
            attributes={"werk.queue": job.queue, "werk.attempt": job.attempts, "werk.job_id": str(job.id)},
        )
        open_spans[job.id] = (span, context.attach(trace.set_span_in_context(span)))

    def end(ctx: Context) -> None:
        opened = open_spans.pop(ctx.job.id, None)
        if opened is None:
            return
        span, token = opened
        outcome = _outcome(ctx)
        span.set_attribute("werk.outcome", outcome)
        if ctx.exception is not None and outcome not in ("requeued",):
            span.record_exception(ctx.exception)
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(ctx.exception)[:200]))
        span.end()
        context.detach(token)

    worker.add_before_process(begin)
    worker.add_after_process(end)
