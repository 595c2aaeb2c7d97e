"""infra/ (the deploy scripts) does not depend on the local stack: it reads template.yaml
with cfn-lint's decoder itself, and the request limits it publishes in config.json are the
ones the local stack reads from the same template."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

from functions.common.limits import limits_of
from local_stack.template import Stack

REPO = Path(__file__).resolve().parents[2]


def test_no_infra_module_imports_the_local_stack():
    for path in sorted((REPO / "infra").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not [n for n in names if n.split(".")[0] == "local_stack"], path.name


def test_the_published_limits_are_the_templates():
    spec = importlib.util.spec_from_file_location("deploy_web", REPO / "infra" / "deploy_web.py")
    deploy_web = sys.modules["deploy_web"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deploy_web)
    template = REPO / "template.yaml"
    functions = Stack.from_file(template).functions()
    expected = limits_of({k: f.environment for k, f in functions.items()})
    assert deploy_web.template_limits(template) == expected
    assert set(deploy_web.function_environments(template)) == set(functions)
