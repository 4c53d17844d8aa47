-- 0008: a queue-depth sample says which of its counts are estimates. Since
-- 0006 the statistics pass counts a queue's live jobs as get_queue_stats
-- does: exactly up to estimate_limit of a queue and status, the planner's
-- estimate above it. get_queue_stats names those statuses; the samples held
-- the same numbers with nothing to tell them apart, so a history of a big
-- backlog read as exact. ``estimated``: the sample's columns (queued,
-- scheduled, waiting, active) whose count is an estimate; NULL when every
-- count is exact, as for every sample taken before this migration (the
-- estimates of those are not known now).
ALTER TABLE {queue_samples} ADD COLUMN estimated text[];
