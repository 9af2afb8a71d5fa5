#!/usr/bin/env bash
# Cloud Scheduler -> Dataflow Flex Template launch, from an aeops checkout: build and push the image, build the
# template spec, create a service account allowed to launch it, and schedule the launch request in
# scheduling/launch-body.json (its ${...} placeholders are filled from the variables below).
#
#   PROJECT=my-project REGION=us-central1 BUCKET=my-bucket bash scheduling/cloud-scheduler.sh
#
# Re-running it is safe: existing resources are kept and the scheduler job is replaced. For GPU workers, set
# CONFIG=dataflow-gpu.yaml (T4 quota needed in REGION; see the README).
set -euo pipefail
: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}"
VERSION="${VERSION:-$(python3 -c 'import re;print(re.search(r"__version__ = \"(.+)\"", open("aeops/__init__.py").read())[1])')}"
SCHEDULE="${SCHEDULE:-0 3 * * *}"            # cron, in TIME_ZONE
TIME_ZONE="${TIME_ZONE:-Etc/UTC}"
CONFIG="${CONFIG:-dataflow.yaml}"
REPO="${REGION}-docker.pkg.dev/${PROJECT}/aeops"
IMAGE="${REPO}/flex:${VERSION}"
TEMPLATE="gs://${BUCKET}/templates/aeops-augment-${VERSION}.json"
SA="aeops-scheduler@${PROJECT}.iam.gserviceaccount.com"
cd "$(dirname "$0")/.."

gcloud services enable dataflow.googleapis.com cloudscheduler.googleapis.com artifactregistry.googleapis.com \
  cloudbuild.googleapis.com --project "$PROJECT"
gcloud artifacts repositories describe aeops --location "$REGION" --project "$PROJECT" >/dev/null 2>&1 ||
  gcloud artifacts repositories create aeops --repository-format docker --location "$REGION" --project "$PROJECT"

# 1. The image (the Dockerfile's `flex` target: launcher + workers) and the template spec pointing at it.
cat > /tmp/aeops-cloudbuild.yaml <<YAML
steps:
- name: gcr.io/cloud-builders/docker
  args: [build, --target, flex, -t, "$IMAGE", .]
images: ["$IMAGE"]
timeout: 3600s
YAML
gcloud builds submit --project "$PROJECT" --region "$REGION" --config /tmp/aeops-cloudbuild.yaml .
gcloud dataflow flex-template build "$TEMPLATE" --project "$PROJECT" \
  --image "$IMAGE" --sdk-language PYTHON --metadata-file templates/metadata.json

# 2. Who launches: a service account that may start Dataflow jobs and act as the workers' service account.
gcloud iam service-accounts describe "$SA" --project "$PROJECT" >/dev/null 2>&1 ||
  gcloud iam service-accounts create aeops-scheduler --project "$PROJECT" --display-name "aeops scheduled launches"
gcloud projects add-iam-policy-binding "$PROJECT" --member "serviceAccount:$SA" --role roles/dataflow.developer \
  --condition None >/dev/null
PROJECT_NUMBER="$(gcloud projects describe "$PROJECT" --format 'value(projectNumber)')"
gcloud iam service-accounts add-iam-policy-binding "${PROJECT_NUMBER}-compute@developer.gserviceaccount.com" \
  --project "$PROJECT" --member "serviceAccount:$SA" --role roles/iam.serviceAccountUser >/dev/null

# 3. The request body, placeholders filled, and the schedule that POSTs it.
BODY="$(mktemp)"
sed -e "s|\${PROJECT}|$PROJECT|g; s|\${REGION}|$REGION|g; s|\${BUCKET}|$BUCKET|g; s|\${VERSION}|$VERSION|g" \
  -e "s|/template/configs/dataflow.yaml|/template/configs/$CONFIG|" scheduling/launch-body.json > "$BODY"
URI="https://dataflow.googleapis.com/v1b3/projects/${PROJECT}/locations/${REGION}/flexTemplates:launch"
gcloud scheduler jobs delete aeops-regenerate --location "$REGION" --project "$PROJECT" --quiet 2>/dev/null || true
gcloud scheduler jobs create http aeops-regenerate --project "$PROJECT" --location "$REGION" \
  --schedule "$SCHEDULE" --time-zone "$TIME_ZONE" --uri "$URI" --http-method POST \
  --headers Content-Type=application/json --message-body-from-file "$BODY" \
  --oauth-service-account-email "$SA" --oauth-token-scope https://www.googleapis.com/auth/cloud-platform \
  --attempt-deadline 180s
rm -f "$BODY"
echo "scheduled: gcloud scheduler jobs run aeops-regenerate --location $REGION --project $PROJECT  # to try it now"
