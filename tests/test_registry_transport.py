"""Transport: scheme choice (TLS, plain HTTP on loopback), redaction, retry policy."""

from __future__ import annotations

import json
import logging

import pytest
import urllib3

from builder.registry.push import ClientPool, push_image
from builder.registry.transport import RetryPolicy, Transport, redact_url
from registry_fixtures import make_image, registry, skopeo, start_registry


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory):
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    reg = start_registry(tmp_path_factory.mktemp("tls"), tls=True)
    yield reg
    reg.stop()


def test_loopback_tls_registry_with_self_signed_cert(tls_registry, tmp_path):
    transport = Transport(tls_registry.host, credentials=None)
    assert transport.base_url == f"https://{tls_registry.host}"
    image = make_image(tmp_path / "img", layers=1)
    push_image(image, [f"{tls_registry.host}/tls/app:1"])
    info = json.loads(skopeo("inspect", "--tls-verify=false",
                             f"docker://{tls_registry.host}/tls/app:1"))
    assert info["Digest"] == image.digest


def test_loopback_plain_http_fallback(registry):
    transport = Transport(registry.host, credentials=None)
    assert transport.base_url == f"http://{registry.host}"


def test_non_loopback_is_https_with_verification_unless_insecure():
    # No request is sent: only 127.0.0.1 may be contacted from tests.
    assert not Transport("reg.example:5000", credentials=None).loose
    assert Transport("reg.example:5000", credentials=None)._verify
    assert Transport("reg.example:5000", credentials=None, insecure=True).loose
    assert Transport("docker.io", credentials=None).host == "registry-1.docker.io"


def test_redact_url():
    url = "https://user:pw@reg.example:5000/v2/a/blobs/uploads/u?_state=SECRET&digest=x#f"
    assert redact_url(url) == "https://reg.example:5000/v2/a/blobs/uploads/u"


def test_retry_policy_backoff_is_bounded():
    p = RetryPolicy(base_delay=0.5, max_delay=8, max_retry_after=30)
    assert [p.delay(i) for i in range(6)] == [0.5, 1, 2, 4, 8, 8]
    assert p.delay(0, retry_after=3) == 3
    assert p.delay(0, retry_after=3600) == 30


def test_secrets_stay_out_of_logs_and_errors(registry, tmp_path, caplog):
    """Upload URLs carry a state token in the query; it never reaches a log line."""
    image = make_image(tmp_path / "img", layers=1, size=200_000)
    with caplog.at_level(logging.DEBUG, logger="ocibuild.registry"):
        push_image(image, [f"{registry.host}/logs/app:1"],
                   pool=ClientPool(chunk_size=64 * 1024))
    text = caplog.text
    assert "PATCH" in text and "_state" not in text and "?" not in text
