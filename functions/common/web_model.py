"""The production package's ONNX graphs for the browser (live recognition, docs/web.md).

The page runs the same two graphs as the server, with onnxruntime-web, so it needs the
package's files on its own origin's terms: through the API, never through presigned URLs
to the bucket (the local emulator refuses browsers, and the bucket's CORS names only
uploads). Two routes, both public, as `GET /models` is:

- `GET /models/production/web`: which version is in production, its vocabulary,
  preprocessing and search settings, and the URL, SHA-256 and size of each graph. Small and
  revalidated on every load (`no-cache` with an ETag), so a promotion reaches the browser
  on its next load.
- `GET /models/{version}/web/{name}`: one graph's bytes. A version's files never change
  (the manifest holds their hashes), so the answer is cached for a year (`immutable`),
  with the SHA-256 as its ETag; a promotion changes the URL, not the content behind one.

The graphs are the encoder and the decoder's step graph, GRU or Transformer, and for a
Transformer trained both ways its read graph, through which the page rescores the beam right
to left as the server does. Only the production version is served, and only files that match
its manifest. A graph larger than a Lambda answer can carry is not offered (the export
stores fp16-exact weights as fp16 to stay under it: `model_export.export.store_half`), nor a
decoder the page cannot drive: the manifest says why, and the page recognises on the server
instead. Nothing here imports numpy or onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from botocore.exceptions import ClientError

from functions.common.model_bucket import package_key
from inktex.errors import InkTeXError, InputError

WEB_FILES = ("encoder.onnx", "decoder_step.onnx")  # every package's
READ_FILE = "decoder_read.onnx"  # a bidirectional Transformer's, for the right-to-left rescoring
BROWSER_DECODERS = ("gru", "transformer")  # the step graphs web/app/step-models.js drives
SETTINGS_FILES = ("vocab.json", "preprocess.json", "model.json")
# A Lambda answer carries 6 MB, and a binary body travels base64-encoded (4/3 larger).
MAX_FILE_BYTES = 4_400_000
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
_SEARCH_SETTINGS = (
    "max_len",
    "beam_size",
    "length_penalty",
    "bidirectional",
    "confidence_temperature",  # the reported probabilities' calibration (inktex.package)
)


class WebModelNotFound(InputError):
    """No such graph for the browser (not the production version, or not a graph)."""

    status = 404


class WebModelUnavailable(InkTeXError):
    """Production names no package, or one whose files do not match its manifest."""

    status = 503


@dataclass(frozen=True)
class WebAnswer:
    """What a route answers: the handler turns it into an HTTP response."""

    status: int
    body: bytes
    content_type: str
    headers: dict


class WebModels:
    """Reads a version's manifest and graphs from the model bucket, once per container:
    both are immutable for a version, so one version's files are kept in memory."""

    def __init__(self, s3, bucket: str):
        self.s3, self.bucket = s3, bucket
        self._manifests: dict[str, dict] = {}
        self._files: dict[tuple[str, str], tuple[bytes, str]] = {}

    def _get(self, version: str, name: str) -> bytes:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=package_key(version, name))[
                "Body"
            ].read()
        except ClientError as exc:
            raise WebModelUnavailable(f"model {version} lacks {name}: {exc}") from exc

    def _manifest_of(self, version: str) -> dict:
        if version not in self._manifests:
            self._manifests = {version: self._read_manifest(version)}  # keep one version
        return self._manifests[version]

    def manifest(self, version: str, base_path: str = "") -> dict:
        """What the browser needs to run `version`: settings inline, graphs by URL."""
        manifest = json.loads(json.dumps(self._manifest_of(version)))
        for name, entry in (manifest["files"] or {}).items():
            entry["url"] = f"{base_path}/models/{version}/web/{name}"
        return manifest

    def _read_manifest(self, version: str) -> dict:
        try:
            package = json.loads(self._get(version, "manifest.json"))
            hashes = package["files"]
            settings = {name: json.loads(self._get(version, name)) for name in SETTINGS_FILES}
        except (ValueError, KeyError, TypeError) as exc:
            raise WebModelUnavailable(f"model {version}'s package is unreadable: {exc}") from exc
        files: dict = {}
        model = settings["model.json"]
        reason = _decoder_refusal(model)  # set when the browser cannot run this version
        for name in _web_files(model, hashes):
            if name not in hashes:
                raise WebModelUnavailable(f"model {version}'s manifest does not list {name}")
            if reason:
                continue
            try:
                head = self.s3.head_object(Bucket=self.bucket, Key=package_key(version, name))
            except ClientError as exc:
                raise WebModelUnavailable(f"model {version} lacks {name}: {exc}") from exc
            size = int(head["ContentLength"])
            if size > MAX_FILE_BYTES:
                reason = (
                    f"{name} is {size / 1e6:.1f} MB, more than an API answer carries "
                    f"({MAX_FILE_BYTES / 1e6:.1f} MB): this model runs on the server only"
                )
                break
            files[name] = {"sha256": hashes[name], "bytes": size}
        return {
            "version": str(package.get("version") or version),
            "vocab": settings["vocab.json"],
            "preprocess": settings["preprocess.json"],
            "search": {
                **{k: model[k] for k in _SEARCH_SETTINGS if k in model},
                "decoder": _decoder(model),
            },
            "files": None if reason else files,
            "browser": not reason,
            "reason": reason,
        }

    def graph(self, version: str, name: str) -> tuple[bytes, str]:
        """A graph's bytes and SHA-256, checked against the package's manifest."""
        key = (version, name)
        if key not in self._files:
            manifest = self._manifest_of(version)
            if not manifest["files"]:
                raise WebModelNotFound(manifest["reason"])
            if name not in manifest["files"]:
                raise WebModelNotFound(f"model {version} has no {name} for the browser")
            data = self._get(version, name)
            digest = hashlib.sha256(data).hexdigest()
            if digest != manifest["files"][name]["sha256"]:
                where = package_key(version, name)
                raise WebModelUnavailable(f"{where} does not match its manifest")
            self._files = {k: v for k, v in self._files.items() if k[0] == version}
            self._files[key] = (data, digest)
        return self._files[key]


def _decoder(model: dict) -> str:
    """A package's decoder, as model.json names it (older GRU packages name none)."""
    return str(model.get("decoder") or model.get("model_config", {}).get("decoder") or "gru")


def _web_files(model: dict, hashes: dict) -> tuple[str, ...]:
    """The graphs the browser loads: the encoder and the step graph, and the read graph of a
    package rescored right to left that has one (without it the page rescores step by step,
    as the server's runtime does)."""
    if model.get("bidirectional") and READ_FILE in hashes:
        return (*WEB_FILES, READ_FILE)
    return WEB_FILES


def _decoder_refusal(model: dict) -> str:
    """Why the browser cannot run a package's decoder ("" when it can): its live mode
    (web/app/step-models.js) drives a GRU's or a Transformer's step graph, state and all."""
    decoder = _decoder(model)
    if decoder in BROWSER_DECODERS:
        return ""
    return (
        f"this model's decoder is a {decoder}; the browser runs "
        f"{' and '.join(BROWSER_DECODERS)} decoders only: this model runs on the server only"
    )


_current: list[WebModels] = []  # this container's reader


def for_services(services) -> WebModels:
    """One reader per container (a new one for new clients: tests build several)."""
    bucket = services.settings.model_bucket
    if not _current or _current[0].s3 is not services.s3 or _current[0].bucket != bucket:
        _current[:] = [WebModels(services.s3, bucket)]
    return _current[0]


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return etag in tags or "*" in tags


def manifest_answer(
    models: WebModels, production: str, if_none_match: str | None = None, base_path: str = ""
) -> WebAnswer:
    """`GET /models/production/web`."""
    if not production:
        raise WebModelUnavailable(
            "no model is promoted to production yet: run `inktex models promote VERSION`"
        )
    body = json.dumps(models.manifest(production, base_path), sort_keys=True).encode()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"Cache-Control": REVALIDATE, "ETag": etag}
    if _etag_matches(if_none_match, etag):
        return WebAnswer(304, b"", "application/json", headers)
    return WebAnswer(200, body, "application/json", headers)


def graph_answer(
    models: WebModels, production: str, version: str, name: str, if_none_match: str | None = None
) -> WebAnswer:
    """`GET /models/{version}/web/{name}`: only the production version's graphs."""
    if name not in (*WEB_FILES, READ_FILE):
        names = ", ".join((*WEB_FILES, READ_FILE))
        raise WebModelNotFound(f"{name} is not a graph the browser loads: {names}")
    if version != production:
        raise WebModelNotFound(
            f"model {version} is not in production (it is {production or 'unset'}): "
            "GET /models/production/web names the graphs to load"
        )
    data, digest = models.graph(version, name)
    etag = f'"{digest}"'
    headers = {"Cache-Control": IMMUTABLE, "ETag": etag, "X-Content-Type-Options": "nosniff"}
    if _etag_matches(if_none_match, etag):
        return WebAnswer(304, b"", "application/octet-stream", headers)
    return WebAnswer(200, data, "application/octet-stream", headers)
