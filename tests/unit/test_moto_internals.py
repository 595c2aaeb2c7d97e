"""The local stack's one use of moto's internals holds under the pinned moto.

S3 has no API that sets a version id, and this system's records name versions by id
(previous_versions, claims, erasure), so the journal restores versions with their own ids
through moto's S3 model (`local_stack/journal.py`, `_put_versions`: `FakeKey`,
`FakeDeleteMarker`, a bucket's key store). moto is pinned for that; these tests fail when
the pinned version changes, or when what `_put_versions` relies on changes shape in it.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import boto3
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID

from local_stack.journal import Version, _put_versions

REPO = Path(__file__).resolve().parents[2]


def test_moto_is_pinned_to_the_version_installed():
    pins = set(re.findall(r'"moto\[server\]==([^"]+)"', (REPO / "pyproject.toml").read_text()))
    locked = re.search(r"^moto==(\S+)$", (REPO / "requirements.lock").read_text(), re.M)
    assert locked is not None, "requirements.lock has no moto (make lock)"
    assert pins == {locked[1]} == {version("moto")}


@mock_aws
def test_versions_come_back_with_their_own_ids_metadata_and_markers(tmp_path):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="data")
    s3.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})
    (tmp_path / "first").write_bytes(b"1")
    (tmp_path / "second").write_bytes(b"22")
    kept = {"content-type": "application/json", "x-amz-meta-owner": "alice"}
    versions = [
        Version("v1.first", "2026-01-01T00:00:01+00:00", "first", kept),
        Version("v2.second", "2026-01-01T00:00:02+00:00", "second"),
        Version("v3.marker", "2026-01-01T00:00:03+00:00", None),
    ]
    _put_versions(DEFAULT_ACCOUNT_ID, {("data", "a/key.json"): versions}, tmp_path)

    listed = s3.list_object_versions(Bucket="data")
    assert sorted(v["VersionId"] for v in listed["Versions"]) == ["v1.first", "v2.second"]
    assert [(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [
        ("v3.marker", True)
    ]
    first = s3.get_object(Bucket="data", Key="a/key.json", VersionId="v1.first")
    assert first["Body"].read() == b"1"
    assert first["ContentType"] == "application/json" and first["Metadata"] == {"owner": "alice"}
    assert first["LastModified"].isoformat().startswith("2026-01-01T00:00:01")
    second = s3.get_object(Bucket="data", Key="a/key.json", VersionId="v2.second")
    assert second["Body"].read() == b"22"
