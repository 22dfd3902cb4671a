"""Image references per the docker/distribution grammar and docker's normalization."""

from __future__ import annotations

import pytest

from builder.registry.reference import (BadReferenceError, Reference, is_loopback,
                                        parse_reference)

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, registry, repo, tag, digest", [
    ("ubuntu", "docker.io", "library/ubuntu", "latest", None),
    ("ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", None),
    ("docker.io/ubuntu", "docker.io", "library/ubuntu", "latest", None),
    ("index.docker.io/library/ubuntu:1", "docker.io", "library/ubuntu", "1", None),
    ("user/app", "docker.io", "user/app", "latest", None),
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/ml/iris:1.0.0", "localhost:5000", "ml/iris", "1.0.0", None),
    ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000", "a/b/c", "latest", None),
    ("ghcr.io/o/p@" + D, "ghcr.io", "o/p", None, D),
    ("reg.example/o/p:t@" + D, "reg.example", "o/p", "t", D),
    ("Reg.Example:443/a_b/c-d/e.f__g", "Reg.Example:443", "a_b/c-d/e.f__g", "latest", None),
    ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
])
def test_parse_and_normalize(text, registry, repo, tag, digest):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repo, tag, digest)
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize("text, why", [
    ("", "empty"),
    ("Ubuntu", "lowercase"),
    ("user/App", "lowercase"),
    ("app:", "invalid tag"),
    ("app:-x", "invalid tag"),
    ("app:" + "t" * 129, "invalid tag"),
    ("app@sha256:abc", "sha256"),
    ("app@md5:" + "a" * 32, "sha256"),
    ("app@sha256:" + "AB" * 32, "sha256"),
    ("a//b", "component"),
    ("a/-b", "component"),
    ("a/b_", "component"),
    ("reg.example:port/app", "registry"),
    ("-reg.example/app", "registry"),
    (" app", "whitespace"),
    ("reg.example/" + "a" * 256, "longer than"),
    (":tag", "no repository"),
])
def test_malformed_references_say_why(text, why):
    with pytest.raises(BadReferenceError, match=why):
        parse_reference(text)


def test_api_host_and_identifier():
    hub = parse_reference("busybox")
    assert hub.api_host == "registry-1.docker.io"
    assert hub.identifier == "latest"
    assert str(hub) == "docker.io/library/busybox:latest"
    local = parse_reference("localhost:5000/x@" + D)
    assert local.api_host == "localhost:5000" and local.identifier == D
    assert str(local.with_tag("v2")) == "localhost:5000/x:v2"
    assert parse_reference("x", default_tag=None) == Reference("docker.io", "library/x")


@pytest.mark.parametrize("host, loop", [
    ("localhost", True), ("localhost:5000", True), ("127.0.0.1:5000", True),
    ("127.3.2.1", True), ("[::1]:5000", True), ("::1", True),
    ("10.0.0.1:5000", False), ("reg.example", False), ("localhost.example", False),
])
def test_loopback(host, loop):
    assert is_loopback(host) is loop
