"""`make deploy`'s web step (infra/deploy_web.py) against moto: config.json from the stack's
outputs, only the page's files synced (with their types), stale objects removed, the cache
invalidated; and the CloudFront security headers in step with the page's own CSP."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from local_stack.template import Stack, load_template

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("deploy_web", REPO / "infra" / "deploy_web.py")
deploy_web = sys.modules["deploy_web"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deploy_web)

REGION = "eu-west-1"
OUTPUTS = {
    "ApiUrl": "https://abcd1234.execute-api.eu-west-1.amazonaws.com",
    "UserPoolDomain": "https://inktex-dev-123456789012.auth.eu-west-1.amazoncognito.com",
    "UserPoolId": "eu-west-1_AbCdEfGhI",
    "UserPoolClientId": "1example23456789abcdefghij",
    "WebUrl": "https://d111111abcdef8.cloudfront.net/",
    "WebBucketName": "inktex-web-dev-123456789012-eu-west-1",
}


@pytest.fixture
def web(tmp_path) -> Path:
    """A web/ folder with the page's files and what must never be published."""
    root = tmp_path / "web"
    for name, text in {
        "index.html": "<!doctype html>",
        "favicon.svg": "<svg/>",
        "app/main.js": "export {};",
        "styles/app.css": "body{}",
        "vendor/katex/katex.mjs": "export default {};",
        "vendor/katex/fonts/KaTeX_Main-Regular.woff2": "woff2",
        "config.json": '{"local": true}',
        "package.json": "{}",
        "node_modules/katex/katex.js": "",
        "scripts/vendor.mjs": "",
        "app/.DS_Store": "",
    }.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def aws(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        s3 = session.client("s3")
        s3.create_bucket(
            Bucket=OUTPUTS["WebBucketName"],
            CreateBucketConfiguration={"LocationConstraint": REGION},
        )
        distribution = session.client("cloudfront").create_distribution(
            DistributionConfig={
                "CallerReference": "test",
                "Comment": "",
                "Enabled": True,
                "Origins": {
                    "Quantity": 1,
                    "Items": [
                        {
                            "Id": "web",
                            "DomainName": "web.s3.amazonaws.com",
                            "S3OriginConfig": {"OriginAccessIdentity": ""},
                        }
                    ],
                },
                "DefaultCacheBehavior": {
                    "TargetOriginId": "web",
                    "ViewerProtocolPolicy": "redirect-to-https",
                },
            }
        )["Distribution"]["Id"]
        outputs = {**OUTPUTS, "WebDistributionId": distribution}
        template = {
            "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {k: {"Value": v} for k, v in outputs.items()},
        }
        session.client("cloudformation").create_stack(
            StackName="inktex-dev", TemplateBody=json.dumps(template)
        )
        yield session, outputs


def keys(s3, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_only_the_pages_files_are_selected(web):
    selected = [key for _, key in deploy_web.site_files(web)]
    assert selected == [
        "app/main.js",
        "favicon.svg",
        "index.html",
        "styles/app.css",
        "vendor/katex/fonts/KaTeX_Main-Regular.woff2",
        "vendor/katex/katex.mjs",
    ]


def test_a_web_folder_without_vendor_is_refused(web):
    import shutil

    shutil.rmtree(web / "vendor")
    with pytest.raises(deploy_web.DeployError, match="make install"):
        deploy_web.site_files(web)


def test_types_and_caching():
    assert deploy_web.content_type("app/main.js").startswith("text/javascript")
    assert deploy_web.content_type("vendor/katex/katex.mjs").startswith("text/javascript")
    assert deploy_web.content_type("vendor/katex/fonts/a.woff2") == "font/woff2"
    assert deploy_web.cache_control("vendor/katex/katex.mjs").startswith("public, max-age=")
    assert deploy_web.cache_control("index.html") == "no-cache"


def test_config_json_comes_from_the_stacks_outputs(aws):
    session, outputs = aws
    got = deploy_web.stack_outputs(session.client("cloudformation"), "inktex-dev")
    config = deploy_web.render_config(got, REGION)
    assert config == {
        "apiUrl": outputs["ApiUrl"],
        "authUrl": outputs["UserPoolDomain"],
        "region": REGION,
        "userPoolId": outputs["UserPoolId"],
        "userPoolClientId": outputs["UserPoolClientId"],
        "redirectUri": "https://d111111abcdef8.cloudfront.net/",
        "logoutUri": "https://d111111abcdef8.cloudfront.net/",
        "scope": "openid email profile",
        "limits": deploy_web.template_limits(),
    }
    # every key the page reads (web/config.example.json documents them)
    example = json.loads((REPO / "web" / "config.example.json").read_text())
    assert set(example) <= set(config)


def test_a_stack_without_the_web_outputs_is_refused(aws):
    session, _ = aws
    template = {"Resources": {"T": {"Type": "AWS::SNS::Topic"}}, "Outputs": {}}
    cfn = session.client("cloudformation")
    cfn.create_stack(StackName="old", TemplateBody=json.dumps(template))
    with pytest.raises(deploy_web.DeployError, match="WebBucketName"):
        deploy_web.stack_outputs(cfn, "old")


def test_publish_syncs_the_site_and_invalidates_the_cache(aws, web):
    session, outputs = aws
    s3, bucket = session.client("s3"), outputs["WebBucketName"]
    s3.put_object(Bucket=bucket, Key="app/old.js", Body=b"stale")

    summary = deploy_web.publish(session, "inktex-dev", web)
    assert summary["uploaded"] == 7 and summary["deleted"] == 1 and summary["invalidation"]
    assert sorted(keys(s3, bucket)) == sorted(
        [key for _, key in deploy_web.site_files(web)] + ["config.json"]
    )
    config = s3.get_object(Bucket=bucket, Key="config.json")
    assert json.loads(config["Body"].read())["apiUrl"] == outputs["ApiUrl"]
    assert config["CacheControl"] == "no-store"
    module = s3.get_object(Bucket=bucket, Key="app/main.js")
    assert module["ContentType"].startswith("text/javascript")
    assert module["CacheControl"] == "no-cache"
    invalidations = session.client("cloudfront").list_invalidations(
        DistributionId=outputs["WebDistributionId"]
    )["InvalidationList"]
    assert invalidations["Quantity"] == 1

    # Again, unchanged: nothing uploaded, nothing to invalidate.
    again = deploy_web.publish(session, "inktex-dev", web)
    assert (again["uploaded"], again["unchanged"], again["deleted"]) == (0, 7, 0)
    assert again["invalidation"] is None

    # A changed file is uploaded alone; a dry run changes nothing.
    (web / "app" / "main.js").write_text("export const x = 1;")
    dry = deploy_web.publish(session, "inktex-dev", web, dry_run=True)
    assert dry["uploaded"] == 1 and dry["invalidation"] is None
    assert s3.get_object(Bucket=bucket, Key="app/main.js")["Body"].read() == b"export {};"


def test_samconfig_names_the_stack_and_region():
    assert deploy_web.samconfig_target("dev") == ("inktex-dev", "eu-west-1")
    with pytest.raises(deploy_web.DeployError):
        deploy_web.samconfig_target("nope")


# --- template.yaml: the distribution's headers -----------------------------------------------


def _directives(policy: str) -> dict[str, str]:
    parts = (p.strip() for p in policy.split(";"))
    return {p.split()[0]: " ".join(p.split()[1:]) for p in parts if p}


def test_cloudfronts_csp_is_the_pages_own_narrowed_to_the_deployment():
    html = (REPO / "web" / "index.html").read_text()
    meta = _directives(
        re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)[1]
    )
    stack = Stack.from_file(REPO / "template.yaml")
    config = stack.resolve(
        stack.resources["WebSecurityHeadersPolicy"]["Properties"]["ResponseHeadersPolicyConfig"]
    )
    headers = config["SecurityHeadersConfig"]
    header = _directives(headers["ContentSecurityPolicy"]["ContentSecurityPolicy"])
    assert header.pop("frame-ancestors") == "'none'"  # a <meta> cannot carry it
    connect = header.pop("connect-src").split()
    meta_connect = meta.pop("connect-src")
    assert header == meta, "template.yaml's CSP and web/index.html's differ"
    assert connect[0] == "'self'" and "https:" in meta_connect.split()
    assert all(source.startswith("https://") for source in connect[1:])
    assert any(".execute-api." in source for source in connect)
    assert any(".amazoncognito.com" in source for source in connect)
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert headers["ContentTypeOptions"]["Override"] is True
    assert headers["ReferrerPolicy"]["ReferrerPolicy"] == "same-origin"


def test_the_distribution_serves_the_app_over_https_with_an_spa_fallback():
    raw = load_template(REPO / "template.yaml")["Resources"]
    config = raw["WebDistribution"]["Properties"]["DistributionConfig"]
    behaviour = config["DefaultCacheBehavior"]
    assert behaviour["ViewerProtocolPolicy"] == "redirect-to-https"
    assert behaviour["ResponseHeadersPolicyId"] == {"Ref": "WebSecurityHeadersPolicy"}
    fallback = {e["ErrorCode"]: e for e in config["CustomErrorResponses"]}
    assert {403, 404} <= set(fallback)
    assert all(
        e["ResponsePagePath"] == "/index.html" and e["ResponseCode"] == 200
        for e in fallback.values()
    )
    assert config["Origins"][0]["OriginAccessControlId"] == {
        "Fn::GetAtt": ["WebOriginAccessControl", "Id"]
    }
    bucket = raw["WebBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    assert all(bucket.values())
