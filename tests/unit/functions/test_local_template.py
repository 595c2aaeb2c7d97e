"""template.yaml read as the local stack reads it: intrinsics resolved, nothing hand-kept."""

from __future__ import annotations

from lambda_testkit import ENV, REPO

from local_stack.template import Stack, load_template

TEMPLATE = REPO / "template.yaml"


def test_short_form_tags_become_long_form():
    raw = load_template(TEMPLATE)
    bucket = raw["Resources"]["DataBucketPolicy"]["Properties"]["Bucket"]
    assert bucket == {"Ref": "DataBucket"}
    resource = raw["Resources"]["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert resource["Resource"][0] == {"Fn::GetAtt": ["DataBucket", "Arn"]}


def test_names_resolve_as_the_functions_expect_them():
    stack = Stack.from_file(TEMPLATE)
    names = {spec["name"] for spec in stack.buckets().values()}
    assert {ENV["DATA_BUCKET"], ENV["MODEL_BUCKET"]} <= names
    env = stack.functions()["ApiFunction"].environment
    assert env["DATA_BUCKET"] == ENV["DATA_BUCKET"]
    assert env["ALIAS_PARAMETER_PREFIX"] == ENV["ALIAS_PARAMETER_PREFIX"]
    assert env["POWERTOOLS_LOG_LEVEL"] == "DEBUG"  # !If IsProd, for the dev stage


def test_routes_authorizer_and_throttles_come_from_the_template():
    raw = load_template(TEMPLATE)
    declared = [
        (ev["Properties"]["Method"], ev["Properties"]["Path"])
        for r in raw["Resources"].values()
        if r["Type"] == "AWS::Serverless::Function"
        for ev in (r["Properties"].get("Events") or {}).values()
        if ev["Type"] == "HttpApi"
    ]
    api = Stack.from_file(TEMPLATE).http_api()
    assert sorted((r.method, r.path) for r in api.routes) == sorted(declared)
    open_routes = {r.key for r in api.routes if r.authorizer is None}
    assert "POST /recognize" in open_routes and "POST /predictions" not in open_routes
    (authorizer,) = api.authorizers.values()
    assert authorizer.issuer.startswith("https://cognito-idp.us-east-1.amazonaws.com/")
    assert api.throttle_for("POST /recognize").burst < api.throttle_for("GET /health").burst


def test_s3_notifications_follow_the_declared_filters():
    notifications = {n.function: n for n in Stack.from_file(TEMPLATE).s3_notifications()}
    assert set(notifications) == {"UploadInferenceFunction", "FeedbackTriggerFunction"}
    notification = notifications["UploadInferenceFunction"]
    assert notification.bucket == ENV["DATA_BUCKET"]
    assert notification.events == ["s3:ObjectCreated:*"]
    assert notification.filter_rules == [{"Name": "prefix", "Value": "uploads/"}]
    assert notification.on_failure.endswith(":inktex-local-UploadFailuresQueue")


def test_parameter_overrides_apply():
    stack = Stack.from_file(TEMPLATE, {"Stage": "prod"})
    assert stack.conditions["IsProd"] is True
    assert stack.functions()["ApiFunction"].environment["POWERTOOLS_LOG_LEVEL"] == "INFO"


def test_the_web_distribution_is_allowed_by_cors_and_sign_in_locally_too():
    stack = Stack.from_file(TEMPLATE)
    site = "https://inktex-local-webdistribution.cloudfront.invalid"  # no CloudFront here
    assert stack.http_api().cors.allow_origins == [site, "http://localhost:3000"]
    client = stack.resolve(stack.resources["UserPoolClient"]["Properties"])
    assert client["CallbackURLs"][:2] == [f"{site}/", f"{site}/callback"]
    assert client["LogoutURLs"][0] == f"{site}/"
    assert stack.outputs()["WebUrl"] == f"{site}/"
