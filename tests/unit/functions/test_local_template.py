"""template.yaml read as the local stack reads it: intrinsics resolved, nothing hand-kept."""

from __future__ import annotations

import pytest
from lambda_testkit import ENV, REPO

from local_stack.template import Stack, TemplateError, load_template

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


def test_the_template_is_plain_data_and_every_short_form_tag_is_read(tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text(
        "Parameters:\n  Stage: {Type: String, Default: dev}\n"
        "Conditions:\n  IsProd: !Equals [!Ref Stage, prod]\n"
        "Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\n"
        "    Properties:\n      BucketName: !Sub 'b-${Stage}'\n"
        "      Tags: [{Key: k, Value: !If [IsProd, !GetAtt Bucket.Arn, !Select [0, [a]]]}]\n"
    )
    raw = load_template(template)
    props = raw["Resources"]["Bucket"]["Properties"]
    assert raw["Conditions"]["IsProd"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    assert props["BucketName"] == {"Fn::Sub": "b-${Stage}"}
    assert props["Tags"][0]["Value"] == {
        "Fn::If": ["IsProd", {"Fn::GetAtt": ["Bucket", "Arn"]}, {"Fn::Select": [0, ["a"]]}]
    }
    assert type(props["BucketName"]["Fn::Sub"]) is str  # no decoder classes leak out
    assert Stack(raw).resolve(props["BucketName"]) == "b-dev"


def test_a_template_with_a_duplicate_key_is_refused(tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text("Resources:\n  A: {Type: AWS::S3::Bucket}\n  A: {Type: AWS::SQS::Queue}\n")
    with pytest.raises(TemplateError, match="A"):
        load_template(template)
