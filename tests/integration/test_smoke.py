import trio

from werk_trio import Werk


def noop() -> None:
    pass


async def test_enqueue_and_read_back(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(noop, _queue="q1")
        assert job is not None
        back = await app.get_job(job.id)
        assert back.function == "tests.integration.test_smoke.noop"
        assert back.queue == "q1"
