#!/bin/sh
# One scheduled execution: new logs first, then the backfill for at most BACKFILL_MINUTES
# (default 2), so that with a task timeout below the schedule's interval one execution always
# ends before the next starts. The backfill says "done" and makes no request once it is.
set -u
python pipelines/forward.py
forward=$?
python pipelines/backfill.py --max-minutes "${BACKFILL_MINUTES:-2}"
backfill=$?
# the forward job's verdict first (it carries the freshness guard), else the backfill's
[ "$forward" -ne 0 ] && exit "$forward"
exit "$backfill"
