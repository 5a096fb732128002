-- Spend, tokens, latency, cache hits and errors per day, provider and model over the last
-- 30 days: the numbers a Looker Studio report starts from.
SELECT
  DATE(created_at) AS day,
  provider,
  model,
  COUNT(*) AS requests,
  COUNTIF(NOT success) AS errors,
  COUNTIF(cached) AS cache_hits,
  SUM(tokens_in) AS tokens_in,
  SUM(tokens_out) AS tokens_out,
  ROUND(SUM(cost), 6) AS cost_usd,
  ROUND(AVG(duration), 1) AS avg_duration_ms
FROM ai_gateway.aig_logs
WHERE created_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 30 DAY)
GROUP BY day, provider, model
ORDER BY day DESC, cost_usd DESC, provider, model;
