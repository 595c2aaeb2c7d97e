#!/usr/bin/env bash
# Regenerates the sample events: `sam local generate-event` for each source, then edited to
# our buckets, routes and claims (the edits are the Python below, so they are reviewable).
# `sam local invoke ApiFunction -e events/api_create_prediction.json` uses them where Docker
# exists; tests/unit/functions load them through one helper.
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0
SAM=${SAM:-.venv-sam/bin/sam}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

$SAM local generate-event apigateway http-api-proxy > "$tmp/http.json"
$SAM local generate-event s3 put --bucket inktex-data-dev-123456789012-us-east-1 \
  --key "uploads/user-1/photo one.png" --region us-east-1 > "$tmp/s3.json"
$SAM local generate-event cloudwatch scheduled-event > "$tmp/eventbridge.json"

python3 - "$tmp" <<'PY'
import base64
import copy
import json
import sys
from pathlib import Path

tmp, out = Path(sys.argv[1]), Path("events")
pixel_png = Path("tests/fixtures/inkml/RIT_2014_19.png").read_bytes()
strokes = [[[10, 10], [40, 40]], [[40, 10], [10, 40]]]  # an "x"
claims = {"sub": "user-1", "cognito:username": "user-1", "email": "user-1@example.org",
          "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_example",
          "aud": "exampleclientid", "token_use": "id"}
pid = "8234567890123-0123456789abcdef01234567"


def http(method, path, route, body=None, content_type=None, signed_in=True, query=None,
         path_params=None):
    event = copy.deepcopy(json.loads((tmp / "http.json").read_text()))
    event["routeKey"] = f"{method} {route}"
    event["rawPath"] = path
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    event.pop("cookies", None)
    event["headers"] = {"accept": "application/json", "host": "id.execute-api.us-east-1.amazonaws.com"}
    if content_type:
        event["headers"]["content-type"] = content_type
    if query:
        event["queryStringParameters"] = query
    else:
        event.pop("queryStringParameters", None)
    if path_params:
        event["pathParameters"] = path_params
    else:
        event.pop("pathParameters", None)
    event.pop("stageVariables", None)
    ctx = event["requestContext"]
    ctx.pop("authentication", None)
    ctx["routeKey"] = event["routeKey"]
    ctx["http"]["method"] = method
    ctx["http"]["path"] = path
    if signed_in:
        ctx["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    else:
        ctx.pop("authorizer", None)
    if body is None:
        event.pop("body", None)
        event["isBase64Encoded"] = False
    else:
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    return event


events = {
    "api_recognize.json": http("POST", "/recognize", "/recognize",
                               json.dumps({"strokes": strokes}).encode(), "application/json",
                               signed_in=False),
    "api_create_prediction.json": http("POST", "/predictions", "/predictions", pixel_png,
                                       "image/png"),
    "api_list_predictions.json": http("GET", "/predictions", "/predictions",
                                      query={"limit": "20"}),
    "api_get_prediction.json": http("GET", f"/predictions/{pid}", "/predictions/{prediction_id}",
                                    path_params={"prediction_id": pid}),
    "api_get_prediction_input.json": http("GET", f"/predictions/{pid}/input",
                                          "/predictions/{prediction_id}/input",
                                          path_params={"prediction_id": pid}),
    "api_delete_prediction.json": http("DELETE", f"/predictions/{pid}",
                                       "/predictions/{prediction_id}",
                                       path_params={"prediction_id": pid}),
    "api_create_upload.json": http("POST", "/uploads", "/uploads",
                                   json.dumps({"filename": "photo one.jpg",
                                               "content_type": "image/jpeg"}).encode(),
                                   "application/json"),
    "api_get_models.json": http("GET", "/models", "/models", signed_in=False),
    "api_health.json": http("GET", "/health", "/health", signed_in=False),
    "api_openapi.json": http("GET", "/openapi.json", "/openapi.json", signed_in=False),
    "api_create_feedback.json": http("POST", "/feedback", "/feedback",
                                     json.dumps({"prediction_id": pid, "latex": "x^{2}+1",
                                                 "consent": True}).encode(),
                                     "application/json"),
    "api_get_retraining.json": http("GET", "/retraining", "/retraining"),
    "api_metrics.json": http("GET", "/metrics", "/metrics", signed_in=False),
    "api_stats.json": http("GET", "/stats", "/stats", query={"hours": "24"}),
}
# Prometheus's scrape: no JWT, the metrics token as a bearer (template.yaml MetricsTokenSecret)
events["api_metrics.json"]["headers"]["authorization"] = "Bearer example-metrics-token"
events["api_metrics.json"]["headers"]["accept"] = "text/plain;version=0.0.4"

s3 = json.loads((tmp / "s3.json").read_text())
record = s3["Records"][0]
record["eventTime"] = "2025-11-27T10:00:00.000Z"
record["s3"]["configurationId"] = "inktex-upload"
record["s3"]["object"].update(size=len(pixel_png), versionId="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrH")
events["s3_upload.json"] = s3

fb = copy.deepcopy(s3)  # a correction arriving under feedback/pending/ (the trigger's event)
fb["Records"][0]["s3"]["configurationId"] = "inktex-feedback"
fb["Records"][0]["s3"]["object"].update(
    key="feedback/pending/0123456789abcdef0123456789abcdef.json", size=812,
    versionId="Wz1JmjA4Mh3W7dZnVd0C1uIsz0P3UfDn")
events["s3_feedback_pending.json"] = fb

eb = json.loads((tmp / "eventbridge.json").read_text())
eb.update({"detail-type": "SageMaker Training Job State Change", "source": "aws.sagemaker",
           "time": "2025-11-27T10:00:00Z",
           "resources": ["arn:aws:sagemaker:us-east-1:123456789012:training-job/inktex-dev-0001"]})
eb["detail"] = {"TrainingJobName": "inktex-dev-0001",
                "TrainingJobArn": eb["resources"][0],
                "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed",
                "ModelArtifacts": {"S3ModelArtifacts":
                                   "s3://inktex-models-dev-123456789012-us-east-1/training/inktex-dev-0001/output/model.tar.gz"}}
events["training_job_state_change.json"] = eb

job = "inktex-dev-batch-000001-0a1b2c3d"  # a feedback batch's job (functions.common.retraining)
done = copy.deepcopy(eb)
done["resources"] = [f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}"]
done["detail"].update(TrainingJobName=job, TrainingJobArn=done["resources"][0])
done["detail"]["ModelArtifacts"]["S3ModelArtifacts"] = (
    f"s3://inktex-models-dev-123456789012-us-east-1/training/{job}/output/model.tar.gz")
events["training_job_completed.json"] = done
failed = copy.deepcopy(done)
failed["detail"].update(TrainingJobStatus="Failed", SecondaryStatus="Failed",
                        FailureReason="AlgorithmError: the feedback batch holds nothing to train on")
events["training_job_failed.json"] = failed

for name, event in events.items():
    (out / name).write_text(json.dumps(event, indent=2) + "\n")
    print("wrote", out / name)
PY
