-- Ids the old Worker stored that table aig_logs lacks. Expect no rows once
-- pipelines/migrate_worker.py has run. Replace worker_dataset with the Worker's dataset (and
-- ai_gateway if you changed it). It reads the id and created_at columns of both tables once,
-- whole (about 46 bytes a row each): at 1M logs a day for a year, about 31 GiB ($0.19).
SELECT
  w.id,
  MIN(w.created_at) AS created_at,
  COUNT(*) AS worker_copies
FROM worker_dataset.aig_logs_raw AS w
LEFT JOIN ai_gateway.aig_logs AS t ON t.id = w.id
WHERE t.id IS NULL
GROUP BY w.id
ORDER BY created_at, w.id
LIMIT 1000;
