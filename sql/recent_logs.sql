-- The newest logs of the last 24 hours: is the pipeline loading? (replaces the Worker's
-- "recent logs" check). The created_at filter keeps BigQuery to one or two daily partitions.
SELECT
  id,
  created_at,
  provider,
  model,
  success,
  status_code,
  cached,
  duration,
  tokens_in,
  tokens_out,
  cost
FROM ai_gateway.aig_logs
WHERE created_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)
ORDER BY created_at DESC, id DESC
LIMIT 100;
