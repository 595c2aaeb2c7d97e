"""config.json's `limits` (issue 19): the request sizes the page states are the ones the
functions enforce, taken from their environments in template.yaml, by the local stack's
config.json and by `make deploy`'s alike; change the template and both follow."""

from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import pytest
from lambda_testkit import ENV, REPO

from functions.common import limits
from functions.common.config import Settings
from local_stack.stack import LocalSettings, LocalStack
from local_stack.template import Stack

TEMPLATE = REPO / "template.yaml"


def _deploy_web():
    if "deploy_web" not in sys.modules:  # as tests/unit/test_deploy_web.py loads it
        path = REPO / "infra" / "deploy_web.py"
        spec = importlib.util.spec_from_file_location("deploy_web", path)
        sys.modules["deploy_web"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["deploy_web"])
    return sys.modules["deploy_web"]


def _local_config(template, tmp_path, **settings) -> dict:
    stack = LocalStack(LocalSettings(state_dir=tmp_path / "state", template=template, **settings))
    return stack.web_config(SimpleNamespace(audience="local-client"))


@pytest.fixture
def smaller_template(tmp_path):
    """template.yaml with other limits: 1 MiB bodies, 8 MiB uploads."""
    text = TEMPLATE.read_text()
    assert text.count('MAX_BODY_BYTES: "4194304"') == 1
    assert text.count('MAX_UPLOAD_BYTES: "20971520"') == 1
    text = text.replace('MAX_BODY_BYTES: "4194304"', 'MAX_BODY_BYTES: "1048576"')
    text = text.replace('MAX_UPLOAD_BYTES: "20971520"', 'MAX_UPLOAD_BYTES: "8388608"')
    path = tmp_path / "template.yaml"
    path.write_text(text)
    return path


def test_the_limits_are_what_the_functions_read_from_template_yaml():
    functions = Stack.from_file(TEMPLATE).functions()
    api = Settings.from_env({**ENV, **functions["ApiFunction"].environment})
    drop = Settings.from_env({**ENV, **functions["UploadInferenceFunction"].environment})
    got = limits.limits_of({k: f.environment for k, f in functions.items()})
    assert got == {
        "maxBodyBytes": api.max_body_bytes,
        "maxUploadBytes": drop.max_upload_bytes,
        "maxJsonDepth": limits.MAX_JSON_DEPTH,
        "maxLatexChars": limits.MAX_LATEX_CHARS,
        "imageTypes": list(limits.IMAGE_TYPES),
    }
    # today's values, which docs/security.md and docs/web.md state
    assert (got["maxBodyBytes"], got["maxUploadBytes"]) == (4 * 2**20, 20 * 2**20)


def test_the_local_config_json_and_the_deployed_one_state_the_same_limits(tmp_path):
    deploy_web = _deploy_web()
    local = _local_config(TEMPLATE, tmp_path)
    assert local["limits"] == deploy_web.template_limits(TEMPLATE)
    outputs = {
        "ApiUrl": "https://abcd1234.execute-api.eu-west-1.amazonaws.com",
        "UserPoolDomain": "https://inktex-dev.auth.eu-west-1.amazoncognito.com",
        "UserPoolId": "eu-west-1_AbCdEfGhI",
        "UserPoolClientId": "1example23456789abcdefghij",
        "WebUrl": "https://d111111abcdef8.cloudfront.net/",
    }
    rendered = deploy_web.render_config(outputs, "eu-west-1", deploy_web.template_limits())
    assert rendered["limits"] == local["limits"]


def test_both_follow_the_template(smaller_template, tmp_path):
    local = _local_config(smaller_template, tmp_path)
    deployed = _deploy_web().template_limits(smaller_template)
    for got in (local["limits"], deployed):
        assert (got["maxBodyBytes"], got["maxUploadBytes"]) == (2**20, 8 * 2**20)


def test_the_local_config_states_what_the_local_functions_run_with(tmp_path):
    # `inktex up`'s function environment overrides reach the functions and the page alike
    local = _local_config(TEMPLATE, tmp_path, function_env={"MAX_BODY_BYTES": "2097152"})
    assert local["limits"]["maxBodyBytes"] == 2 * 2**20
