#!/bin/sh
# Deploys the pipeline as a Cloud Run job started every 5 minutes by Cloud Scheduler (README,
# "A cheaper scheduler: Cloud Run Jobs"). Not run by the tests: they have no Google Cloud. Set
# the variables, read each command, then run them one by one.
set -eu
PROJECT=my-project
REGION=us-central1
ACCOUNT_ID=0123456789abcdef0123456789abcdef
GATEWAY_ID=my-gateway
IMAGE="$REGION-docker.pkg.dev/$PROJECT/aig-logs/pipeline:latest"
RUNNER="aig-logs@$PROJECT.iam.gserviceaccount.com"
SCHEDULER="aig-logs-scheduler@$PROJECT.iam.gserviceaccount.com"

# the image (from the repository root)
gcloud artifacts repositories create aig-logs --repository-format=docker --location="$REGION"
docker build -f deploy/cloud-run/Dockerfile -t "$IMAGE" .
docker push "$IMAGE"

# the Cloudflare token in Secret Manager; BigQuery needs no key: the job's service account has
# BigQuery Job User on the project and Data Editor on the datasets (README, Least privilege)
printf %s "$CLOUDFLARE_API_TOKEN" | gcloud secrets create aig-logs-cloudflare-token --data-file=-
gcloud secrets add-iam-policy-binding aig-logs-cloudflare-token \
  --member="serviceAccount:$RUNNER" --role=roles/secretmanager.secretAccessor

# one task, no retry, and a task timeout below the 5-minute interval: one execution always ends
# (or is stopped, which loses nothing) before the next starts, so two never run at once
gcloud run jobs create aig-logs --image="$IMAGE" --region="$REGION" \
  --service-account="$RUNNER" --tasks=1 --parallelism=1 --max-retries=0 \
  --task-timeout=270s --cpu=1 --memory=1Gi \
  --set-env-vars="SOURCES__AIG_SOURCE__ACCOUNT_ID=$ACCOUNT_ID,SOURCES__AIG_SOURCE__GATEWAY_ID=$GATEWAY_ID,BACKFILL_MINUTES=2" \
  --set-secrets="SOURCES__AIG_SOURCE__API_TOKEN=aig-logs-cloudflare-token:latest"

# every 5 minutes, never retried (a retry could overlap the next execution)
gcloud run jobs add-iam-policy-binding aig-logs --region="$REGION" \
  --member="serviceAccount:$SCHEDULER" --role=roles/run.invoker
gcloud scheduler jobs create http aig-logs-every-5-minutes --location="$REGION" \
  --schedule="*/5 * * * *" --max-retry-attempts=0 --http-method=POST \
  --uri="https://run.googleapis.com/v2/projects/$PROJECT/locations/$REGION/jobs/aig-logs:run" \
  --oauth-service-account-email="$SCHEDULER"
