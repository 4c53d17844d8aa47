-- 0006: live-job counts that stay cheap at any backlog (issue 18). The live
-- jobs of a queue and status are counted exactly up to ``estimate_limit``
-- (QUEUE_STATS and SAMPLE_QUEUES pass it); above it they are the planner's
-- row estimate. Oban Met's reporter makes the same choice (its
-- estimate_limit, 50,000); docs/architecture.md has why, benchmarks/README.md
-- the measurements.

-- The planner's row estimate for the jobs of queue ``q`` in status ``s``: the
-- EXPLAIN of a SELECT of them, its top node's row count. The values are bound
-- as parameters of a one-shot plan, so the estimate is that of these values
-- (the statistics' most common values), not a generic one; nothing is read
-- but the statistics. Volatile: EXPLAIN is refused in any other function.
CREATE FUNCTION {live_estimate}(q text, s text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    plan json;
BEGIN
    EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM {jobs} WHERE queue = $1 AND status = $2'
        INTO plan USING q, s;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::bigint;
END
$$;

-- The live jobs (not finished) by queue and status: exact while a queue and
-- status has at most ``lim`` jobs, else {live_estimate} and ``estimated``
-- true, never below what the capped read saw. Every read is capped (at most
-- about twice the limit), so the cost follows the limit, never the backlog.
-- The queues with claimable jobs come from a skip scan of the dequeue index
-- (one probe per queue); per queue, a capped count of its scheduled-index
-- entries, then one of its dequeue-index entries capped at the limit plus the
-- scheduled ones (index-only: both indexes lead with queue), queued being the
-- difference -- exact up to the limit, unless the queue also has more than
-- the limit of scheduled jobs (then it is unknown: estimated, from 0 up). The
-- running and waiting indexes do not lead with queue: their rows are read
-- once for all queues, capped, so those counts are exact while the whole
-- table has at most the limit of running (active + aborting) or of waiting
-- jobs, and estimated beyond it (for the queues among the rows read).
--
-- A function, not a CTE of the two statements, for two reasons measured
-- (benchmarks/README.md): JIT and planning. Inline, the planner's guesses
-- (ten queues per step of the skip scan, a LIMIT of unknown size) priced the
-- statement past jit_above_cost with a big backlog, and compiling took half
-- of the call; ``SET jit = off`` here keeps it off for these reads alone, and
-- the calling statement is too cheap for JIT. And PL/pgSQL plans the query
-- once per session, where the inline statement was planned on every call
-- (its LIMIT parameter kept it on custom plans): twice the old statement's
-- time where nothing is big.
CREATE FUNCTION {live_counts}(lim bigint)
RETURNS TABLE (queue text, status text, n bigint, estimated boolean)
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY WITH RECURSIVE
    queues AS (
        SELECT min(queue) AS queue FROM {jobs} WHERE status IN ('queued', 'scheduled')
        UNION ALL
        SELECT (SELECT min(j.queue) FROM {jobs} j
                WHERE j.status IN ('queued', 'scheduled') AND j.queue > q.queue)
        FROM queues q WHERE q.queue IS NOT NULL
    ), pending AS (
        SELECT q.queue, d.n AS due, s.n AS scheduled
        FROM queues q
        CROSS JOIN LATERAL (SELECT count(*) AS n FROM (
            SELECT FROM {jobs} j WHERE j.queue = q.queue AND j.status = 'scheduled'
            LIMIT lim + 1) c) s
        CROSS JOIN LATERAL (SELECT count(*) AS n FROM (
            SELECT FROM {jobs} j WHERE j.queue = q.queue AND j.status IN ('queued', 'scheduled')
            LIMIT lim + s.n + 1) c) d
        WHERE q.queue IS NOT NULL
    ), running AS (
        SELECT queue, status FROM {jobs} WHERE status IN ('active', 'aborting') LIMIT lim + 1
    ), waiting AS (
        SELECT queue, status FROM {jobs} WHERE status = 'waiting' LIMIT lim + 1
    ), live AS (
        SELECT queue, 'scheduled' AS status, scheduled AS n, scheduled > lim AS estimated
        FROM pending
        UNION ALL
        SELECT queue, 'queued', CASE WHEN scheduled > lim THEN 0 ELSE due - scheduled END,
            scheduled > lim OR due > lim + scheduled
        FROM pending
        UNION ALL
        SELECT queue, status, count(*), (SELECT count(*) FROM running) > lim
        FROM running GROUP BY queue, status
        UNION ALL
        SELECT queue, status, count(*), (SELECT count(*) FROM waiting) > lim
        FROM waiting GROUP BY queue, status
    ), live_counts AS (
        SELECT queue, status, estimated,
            CASE WHEN estimated THEN GREATEST(n, {live_estimate}(queue, status)) ELSE n END AS n
        FROM live WHERE n > 0 OR estimated
    )
    SELECT l.queue, l.status, l.n::bigint, l.estimated FROM live_counts l;
END
$$;

-- Statistics of queue and status together: without them the planner takes
-- the two as independent (a queue's share of the table times the status's
-- share), which misjudges a backlog held in one queue of many by the share
-- of the others. Built by ANALYZE from its usual sample.
CREATE STATISTICS {jobs_queue_status} (mcv) ON queue, status FROM {jobs};
