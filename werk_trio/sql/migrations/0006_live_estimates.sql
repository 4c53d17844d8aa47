-- 0006: live-job counts that stay cheap at any backlog (issue 18). Below
-- ``estimate_limit`` jobs of a queue and status, QUEUE_STATS and SAMPLE_QUEUES
-- count them exactly (a capped index read); above it they take the planner's
-- row estimate for that queue and status, from this function.

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

-- Statistics of queue and status together: without them the planner takes
-- the two as independent (a queue's share of the table times the status's
-- share), which misjudges a backlog held in one queue of many by the share
-- of the others. Built by ANALYZE from its usual sample.
CREATE STATISTICS {jobs_queue_status} (mcv) ON queue, status FROM {jobs};
