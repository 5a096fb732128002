-- Ids stored more than once. Expect no rows: the merge on id keeps one row per log (replaces
-- the Worker's dedup view check). Widen the 30-day window to check older history; each day
-- scanned is one more partition billed.
SELECT
  id,
  COUNT(*) AS copies,
  MIN(created_at) AS first_created_at,
  MAX(created_at) AS last_created_at
FROM ai_gateway.aig_logs
WHERE created_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 30 DAY)
GROUP BY id
HAVING COUNT(*) > 1
ORDER BY copies DESC, id;
