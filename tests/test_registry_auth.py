"""Authentication against real registries: htpasswd (basic) and token (bearer)."""

from __future__ import annotations

import base64
import io
import json
import os
import stat

import pytest

from builder.errors import InputError, RegistryError
from builder.registry import commands
from builder.registry.auth import Credentials, CredentialStore, parse_challenge
from builder.registry.client import RegistryClient
from builder.registry.pull import pull
from builder.registry.push import ClientPool, push_image
from builder.registry.transport import Transport
from registry_fixtures import TokenIssuer, htpasswd_file, make_image, start_registry

USERS = {"alice": "correct horse battery staple"}


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    d = tmp_path / "docker"
    monkeypatch.setenv("DOCKER_CONFIG", str(d))
    return d / "config.json"


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("basic")
    path = htpasswd_file(tmp, USERS)
    reg = start_registry(tmp, auth={"htpasswd": {"realm": "ocibuild-test", "path": str(path)}})
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("token")
    issuer = TokenIssuer(tmp, USERS)
    reg = start_registry(tmp, auth=issuer.registry_auth())
    yield reg, issuer
    reg.stop()
    issuer.stop()


def _write_config(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _auth(user, password):
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _login_file(docker_config, host, password=USERS["alice"]):
    _write_config(docker_config, {"auths": {host: {"auth": _auth("alice", password)}}})


# -- challenges and config --------------------------------------------------------

def test_parse_bearer_challenge():
    ch = parse_challenge('Bearer realm="https://auth.example/token",service="reg",'
                         'scope="repository:a/b:pull,push"')
    assert ch is not None and ch.scheme == "bearer"
    assert ch.params == {"realm": "https://auth.example/token", "service": "reg",
                         "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="x"').scheme == "basic"
    assert parse_challenge("") is None


def test_credentials_never_in_repr():
    assert "s3cret" not in repr(Credentials("u", "s3cret"))


def test_config_auths_lookup(docker_config):
    _write_config(docker_config, {"auths": {
        "https://index.docker.io/v1/": {"auth": _auth("hub", "pw1")},
        "http://127.0.0.1:5000": {"auth": _auth("local", "pw2")}}})
    store = CredentialStore()
    assert store.get("docker.io") == Credentials("hub", "pw1")
    assert store.get("index.docker.io") == Credentials("hub", "pw1")
    assert store.get("127.0.0.1:5000") == Credentials("local", "pw2")
    assert store.get("other.example") is None


def _fake_helper(tmp_path, monkeypatch, name, secrets):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    log = tmp_path / f"{name}.log"
    script = bindir / f"docker-credential-{name}"
    script.write_text(f"""#!/usr/bin/env python3
import json, sys
secrets = {json.dumps(secrets)}
verb = sys.argv[1]
data = sys.stdin.read()
open({str(log)!r}, "a").write(verb + " " + (data if verb == "get" else
    json.loads(data)["ServerURL"]) + "\\n")
if verb == "get":
    if data.strip() not in secrets:
        print("credentials not found in native keychain"); sys.exit(1)
    user, pw = secrets[data.strip()]
    print(json.dumps({{"ServerURL": data.strip(), "Username": user, "Secret": pw}}))
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_cred_helpers_and_creds_store(docker_config, tmp_path, monkeypatch):
    _fake_helper(tmp_path, monkeypatch, "per", {"reg.example": ["per-user", "pw-per"]})
    _fake_helper(tmp_path, monkeypatch, "store", {"other.example": ["store-user", "pw-st"]})
    _write_config(docker_config, {"credHelpers": {"reg.example": "per"},
                                  "credsStore": "store",
                                  "auths": {"third.example": {"auth": _auth("f", "pw")}}})
    store = CredentialStore()
    assert store.get("reg.example") == Credentials("per-user", "pw-per")
    assert store.get("other.example") == Credentials("store-user", "pw-st")
    assert store.get("third.example") == Credentials("f", "pw")  # helper has none: file


def test_missing_helper_is_a_clear_error(docker_config):
    _write_config(docker_config, {"credsStore": "nonexistent-helper-xyz"})
    with pytest.raises(InputError, match="docker-credential-nonexistent-helper-xyz"):
        CredentialStore().get("reg.example")


# -- basic auth -------------------------------------------------------------------------

def test_basic_auth_good_password(basic_registry, docker_config, tmp_path):
    _login_file(docker_config, basic_registry.host)
    image = make_image(tmp_path / "img")
    ref = f"{basic_registry.host}/private/app:1"
    assert push_image(image, [ref]) == image.digest
    assert pull(ref, cache_dir=tmp_path / "cache").manifest_digest == image.digest


def test_basic_auth_bad_password(basic_registry, docker_config, tmp_path):
    _login_file(docker_config, basic_registry.host, "wrong-password-123")
    image = make_image(tmp_path / "img", layers=1)
    with pytest.raises(RegistryError) as info:
        push_image(image, [f"{basic_registry.host}/private/app:2"])
    assert info.value.status == 401
    assert "credentials were refused" in str(info.value)
    assert "wrong-password-123" not in str(info.value)


def test_basic_auth_anonymous_is_told_to_login(basic_registry, docker_config, tmp_path):
    image = make_image(tmp_path / "img", layers=1)
    with pytest.raises(RegistryError, match="ocibuild login"):
        push_image(image, [f"{basic_registry.host}/private/app:3"])


def test_login_checks_and_writes_config_like_docker(basic_registry, docker_config):
    out = commands.login(basic_registry.host, "alice", True,
                         stdin=io.StringIO(USERS["alice"] + "\n"))
    assert out == {"registry": basic_registry.host, "username": "alice",
                   "config": str(docker_config)}
    assert USERS["alice"] not in json.dumps(out)
    written = json.loads(docker_config.read_text())
    assert written["auths"][basic_registry.host]["auth"] == _auth("alice", USERS["alice"])
    assert stat.S_IMODE(docker_config.stat().st_mode) == 0o600
    assert CredentialStore().get(basic_registry.host) == Credentials("alice", USERS["alice"])


def test_login_with_bad_password_writes_nothing(basic_registry, docker_config):
    with pytest.raises(RegistryError, match="refused"):
        commands.login(basic_registry.host, "alice", "nope-nope")
    assert not docker_config.exists()


def test_login_keeps_other_entries_and_uses_helper(basic_registry, docker_config, tmp_path,
                                                   monkeypatch):
    log = _fake_helper(tmp_path, monkeypatch, "keep", {})
    _write_config(docker_config, {"credsStore": "keep", "auths": {"x.example": {}},
                                  "HttpHeaders": {"User-Agent": "kept"}})
    commands.login(basic_registry.host, "alice", USERS["alice"])
    written = json.loads(docker_config.read_text())
    assert written["HttpHeaders"] == {"User-Agent": "kept"}
    assert written["auths"][basic_registry.host] == {}
    assert f"store {basic_registry.host}" in log.read_text()
    assert USERS["alice"] not in docker_config.read_text()


# -- token auth ---------------------------------------------------------------------------

def test_token_auth_push_and_pull(token_registry, docker_config, tmp_path):
    reg, issuer = token_registry
    _login_file(docker_config, reg.host)
    image = make_image(tmp_path / "img", layers=3)
    pool = ClientPool()
    ref = f"{reg.host}/tok/app:1"
    before = len(issuer.requests)
    assert push_image(image, [ref], pool=pool) == image.digest
    # one token per scope set, reused for every blob and the manifest
    scopes = [tuple(r["scope"]) for r in issuer.requests[before:]]
    assert len(scopes) == len(set(scopes)), scopes
    assert all(r["user"] == "alice" for r in issuer.requests[before:])
    assert pull(ref, cache_dir=tmp_path / "c").manifest_digest == image.digest


def test_token_auth_bad_password(token_registry, docker_config, tmp_path):
    reg, _ = token_registry
    _login_file(docker_config, reg.host, "bad-pw-42")
    with pytest.raises(RegistryError) as info:
        push_image(make_image(tmp_path / "img", layers=1), [f"{reg.host}/tok/app:2"])
    assert info.value.status == 401 and "bad credentials" in str(info.value)
    assert "bad-pw-42" not in str(info.value)


def _pushed_as_alice(host, docker_config, tmp_path, repo_tag):
    """An image pushed to ``host/repo_tag`` with alice's credentials."""
    _login_file(docker_config, host)
    image = make_image(tmp_path / "img", layers=1)
    push_image(image, [f"{host}/{repo_tag}"])
    return image


def test_token_auth_anonymous_can_pull_not_push(token_registry, docker_config, tmp_path):
    reg, _ = token_registry
    image = _pushed_as_alice(reg.host, docker_config, tmp_path, "tok/public:1")
    docker_config.unlink()
    client = RegistryClient(Transport(reg.host))
    assert client.resolve("tok/public", "1") == image.digest
    with pytest.raises(RegistryError) as info:
        push_image(make_image(tmp_path / "img2", layers=1), [f"{reg.host}/tok/public:2"])
    assert info.value.status == 401


def test_expired_token_is_renewed(token_registry, docker_config, tmp_path):
    reg, issuer = token_registry
    image = _pushed_as_alice(reg.host, docker_config, tmp_path, "tok/renew:1")
    client = RegistryClient(Transport(reg.host))
    client.resolve("tok/renew", "1")
    # Spoil the cached token: the registry refuses it, the client fetches another.
    auth = client.transport.auth
    key = next(iter(auth._tokens))
    auth._tokens[key] = ("not-a-valid-token", auth._tokens[key][1])
    n = len(issuer.requests)
    assert client.resolve("tok/renew", "1") == image.digest
    assert len(issuer.requests) == n + 1


@pytest.mark.parametrize("password, ok", [(USERS["alice"], True), ("not-hers-77", False)])
def test_login_against_token_registry(token_registry, docker_config, password, ok):
    reg, _ = token_registry
    if ok:
        commands.login(reg.host, "alice", password)
        assert CredentialStore().get(reg.host) == Credentials("alice", password)
    else:
        with pytest.raises(RegistryError, match="bad credentials") as info:
            commands.login(reg.host, "alice", password)
        assert password not in str(info.value)
        assert not docker_config.exists()
