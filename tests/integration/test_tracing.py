"""Issue 15: OpenTelemetry tracing across a worker process.

The test enqueues inside a span (its own SDK tracer, in-memory exporter); a
separate worker process (AsyncWorker, then ProcessWorker) with its own SDK and
in-memory exporter runs the jobs in burst mode and writes the spans it
finished to a file. Each run span must be a child of the enqueuing span (same
trace, parent = that span), be named after the function and carry queue,
attempt and outcome; a job enqueued outside any span gets a root span.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.proctools import child_env, spawn
from werk_trio import ConfigError, Werk
from werk_trio.tracing import META_KEY, instrument, instrument_worker

CHILD = r"""
import json, os, sys
import trio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from werk_trio import Werk
from werk_trio.tracing import instrument_worker
from werk_trio.worker import worker_class

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
app = Werk(os.environ["WERK_DSN"], schema=os.environ["WERK_SCHEMA"], task_modules=["tests"])

async def main():
    async with app:
        worker = worker_class(sys.argv[1])(app, queues=["traced"], burst=True, handle_signals=False,
                                           concurrency=2)
        instrument_worker(worker, tracer_provider=provider)
        await worker.run()

trio.run(main)
spans = [
    {"name": s.name, "trace_id": s.context.trace_id, "span_id": s.context.span_id,
     "parent": s.parent.span_id if s.parent else None, "attributes": dict(s.attributes),
     "status": s.status.status_code.name}
    for s in exporter.get_finished_spans()
]
with open(sys.argv[2], "w") as f:
    json.dump(spans, f)
print("spans written", flush=True)
"""


def traced_add(a: int, b: int) -> int:
    return a + b


def traced_fail() -> None:
    raise ValueError("traced failure")


@pytest.mark.parametrize("worker_type", ["async", "process"])
async def test_enqueue_span_is_the_parent_of_the_run_span_in_a_worker_process(
    app: Werk, dsn: str, schema: str, tmp_path: Path, worker_type: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    instrument(app)
    with tracer.start_as_current_span("request") as request:
        ok = await app.enqueue(traced_add, 2, 3, _queue="traced")
        bad = await app.enqueue(traced_fail, _queue="traced", _retry=2)
    untraced = await app.enqueue(traced_add, 1, 1, _queue="traced")
    assert ok is not None and bad is not None and untraced is not None
    trace_id = request.get_span_context().trace_id
    assert f"{trace_id:032x}" in ok.meta[META_KEY]["traceparent"]
    assert META_KEY not in untraced.meta, "no span, no context"

    out = tmp_path / "spans.json"
    argv = [sys.executable, "-c", CHILD, worker_type, str(out)]
    with trio.fail_after(120):
        async with spawn(argv, env=child_env(dsn, schema), log_path=tmp_path / "worker.log") as child:
            code = await child.wait()
    assert code == 0, child.output()
    spans = json.loads(out.read_text())
    runs = {}
    for s in spans:
        runs.setdefault(s["attributes"]["werk.job_id"], []).append(s)
    [ok_span] = runs[str(ok.id)]
    assert ok_span["name"] == f"{__name__}.traced_add"
    assert ok_span["trace_id"] == trace_id and ok_span["parent"] == request.get_span_context().span_id
    assert ok_span["attributes"] == {"werk.queue": "traced", "werk.attempt": 1, "werk.job_id": str(ok.id),
                                     "werk.outcome": "complete"}
    first, second = sorted(runs[str(bad.id)], key=lambda s: s["attributes"]["werk.attempt"])
    assert [first["attributes"]["werk.outcome"], second["attributes"]["werk.outcome"]] == ["retry", "failed"]
    assert first["status"] == second["status"] == "ERROR"
    assert {first["trace_id"], second["trace_id"]} == {trace_id}, "a retry stays in the enqueuer's trace"
    assert first["parent"] == second["parent"] == request.get_span_context().span_id
    [root] = runs[str(untraced.id)]
    assert root["parent"] is None and root["trace_id"] != trace_id
    assert len(spans) == 4


def test_instrument_validates_its_argument() -> None:
    with pytest.raises(ConfigError, match="Werk"):
        instrument(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Worker"):
        instrument_worker(object())  # type: ignore[arg-type]
    assert trace.get_tracer_provider() is not None
