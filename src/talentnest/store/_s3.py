"""An archive in an S3-compatible bucket: the four object calls the archive needs, signed with AWS Signature V4.

Path-style addressing (``ENDPOINT/BUCKET/KEY``), which AWS, MinIO, Ceph, Garage and moto all accept; static
credentials from ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and ``AWS_SESSION_TOKEN``. Synchronous, for
a worker thread, one connection per call; every failure is an OSError naming the call, the key and S3's answer.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import shutil
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class S3Store:
    """``s3://BUCKET/PREFIX`` at ``endpoint`` (default: AWS in ``region``)."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        endpoint: str | None = None,
        session_token: str | None = None,
        timeout: float = 60.0,
    ):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.region = region
        self.endpoint = (endpoint or f"https://s3.{region}.amazonaws.com").rstrip("/")
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"ARCHIVE_S3_ENDPOINT must be an http(s) URL, got '{self.endpoint}'")
        self._https = parts.scheme == "https"
        self._netloc = parts.netloc
        self._base_path = parts.path.rstrip("/")
        self._access_key, self._secret_key, self._token = access_key, secret_key, session_token
        self.timeout = timeout

    @classmethod
    def from_url(cls, url: str, environ: Mapping[str, str]) -> S3Store:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"an S3 archive is s3://BUCKET[/PREFIX], got '{url}'")
        access, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            raise ValueError(f"the archive {url} needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment")
        return cls(
            parts.netloc,
            parts.path,
            access_key=access,
            secret_key=secret,
            session_token=environ.get("AWS_SESSION_TOKEN") or None,
            region=environ.get("ARCHIVE_S3_REGION") or environ.get("AWS_REGION") or "us-east-1",
            endpoint=environ.get("ARCHIVE_S3_ENDPOINT") or None,
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    # --- the archive's calls ----------------------------------------------------------------------

    def put_bytes(self, name: str, data: bytes) -> None:
        self._call("PUT", self._key(name), body=data, payload=hashlib.sha256(data).hexdigest(), expect=(200,))

    def put_file(self, name: str, source: Path) -> None:
        digest = hashlib.sha256()
        with Path(source).open("rb") as data:
            while chunk := data.read(1 << 20):
                digest.update(chunk)
        size = Path(source).stat().st_size
        with Path(source).open("rb") as data:
            self._call("PUT", self._key(name), body=data, length=size, payload=digest.hexdigest(), expect=(200,))

    def get_bytes(self, name: str) -> bytes:
        return self._call("GET", self._key(name), expect=(200,))

    def get_file(self, name: str, dest: Path) -> None:
        with Path(dest).open("wb") as out:
            self._call("GET", self._key(name), expect=(200,), sink=out)

    def delete(self, name: str) -> None:
        self._call("DELETE", self._key(name), expect=(200, 204))

    def list(self, prefix: str) -> list[str]:
        wanted = self.prefix + (prefix.strip("/") + "/" if prefix else "")
        names: list[str] = []
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": wanted}
            if token:
                query["continuation-token"] = token
            root = ElementTree.fromstring(self._call("GET", "", query=query, expect=(200,)))
            for item in root.iter(f"{_NS}Contents"):
                key = item.findtext(f"{_NS}Key") or ""
                if key.startswith(self.prefix):
                    names.append(key[len(self.prefix) :])
            if (root.findtext(f"{_NS}IsTruncated") or "").lower() != "true":
                return sorted(names)
            token = root.findtext(f"{_NS}NextContinuationToken")

    # --- the wire ------------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"archive names are relative paths, got {name!r}")
        return self.prefix + name

    def _call(self, method, key, *, query=None, body=b"", length=None, payload=_EMPTY_SHA256, expect, sink=None):
        path = f"{self._base_path}/{quote(self.bucket, safe='')}" + (f"/{quote(key, safe='/-_.~')}" if key else "")
        canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted((query or {}).items()))
        headers = self._sign(method, path, canonical_query, payload)
        size = len(body) if isinstance(body, bytes) else length
        if method == "PUT":
            headers["Content-Length"] = str(size)
        connection_type = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = connection_type(self._netloc, timeout=self.timeout)
        what = f"S3 {method} {self.describe()}{key[len(self.prefix) :] if key else ''}"
        try:
            connection.request(
                method, path + (f"?{canonical_query}" if canonical_query else ""), body=body or None, headers=headers
            )
            response = connection.getresponse()
            if response.status not in expect:
                answer = response.read(4096)
                if response.status == 404 and method == "GET":
                    raise FileNotFoundError(f"{what}: no such object")
                raise OSError(f"{what} answered {response.status}: {_error_text(answer)}")
            if sink is not None:
                shutil.copyfileobj(response, sink, 1 << 20)
                return b""
            return response.read()
        except (http.client.HTTPException, TimeoutError, ConnectionError) as exc:
            raise OSError(f"{what} failed: {exc or type(exc).__name__}") from exc
        finally:
            connection.close()

    def _sign(self, method: str, path: str, canonical_query: str, payload: str) -> dict[str, str]:
        now = time.gmtime()
        amz_date, day = time.strftime("%Y%m%dT%H%M%SZ", now), time.strftime("%Y%m%d", now)
        headers = {"host": self._netloc, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        if self._token:
            headers["x-amz-security-token"] = self._token
        signed = ";".join(sorted(headers))
        canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in sorted(headers))
        request = "\n".join((method, path, canonical_query, canonical_headers, signed, payload))
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()))
        key = f"AWS4{self._secret_key}".encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self._access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
        return headers


def _error_text(answer: bytes) -> str:
    try:
        root = ElementTree.fromstring(answer)
    except ElementTree.ParseError:
        return answer[:300].decode(errors="replace") or "(no body)"
    return f"{root.findtext('Code') or '?'}: {root.findtext('Message') or ''}".strip()
