"""Bases from a registry: pinned by digest, or by tag with a warning / --strict error."""

from __future__ import annotations

import pytest

from builder.errors import InputError
from builder.oci.image import with_config
from builder.oci.types import Platform
from builder.registry.base import load_base
from builder.registry.push import push_image
from builder.sinks.tarball import write_tarball
from registry_fixtures import make_image, registry, skopeo


def test_base_pushed_by_skopeo_used_by_digest(registry, tmp_path):
    image = make_image(tmp_path / "img")
    tar = tmp_path / "base.tar"
    write_tarball(image, tar, "base:1")
    ref = f"{registry.host}/bases/skopeo:1"
    skopeo("copy", "--dest-tls-verify=false", "--format", "v2s2", f"oci-archive:{tar}",
           f"docker://{ref}")
    digest = skopeo("inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                    f"docker://{ref}").strip()
    warnings: list[str] = []
    base = load_base(f"{registry.host}/bases/skopeo@{digest}", Platform(),
                     cache_dir=tmp_path / "c", warn=warnings.append, strict=True)
    assert warnings == [] and base.warning is None
    assert base.digest == digest
    assert base.pinned == f"{registry.host}/bases/skopeo@{digest}"
    assert [l.diff_id for l in base.image.layers] == [l.diff_id for l in image.layers]
    # Passed through untouched, the pulled image keeps the registry's exact bytes...
    assert base.image.digest == digest
    # ...and once built upon, Docker's gzip layer type is carried over as OCI's (same bytes).
    built_on = with_config(base.image, User="65532")
    assert {l.media_type for l in built_on.layers} == {
        "application/vnd.oci.image.layer.v1.tar+gzip"}
    assert built_on.manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"


def test_base_by_tag_warns_with_digest_to_pin(registry, tmp_path):
    image = make_image(tmp_path / "img", layers=1)
    push_image(image, [f"{registry.host}/bases/tagged:1"])
    warnings: list[str] = []
    base = load_base(f"{registry.host}/bases/tagged:1", cache_dir=tmp_path / "c",
                     warn=warnings.append)
    assert base.digest == image.digest
    assert len(warnings) == 1 and image.digest in warnings[0] and "not pinned" in warnings[0]
    assert base.pinned == f"{registry.host}/bases/tagged@{image.digest}"


def test_base_by_tag_is_an_error_when_strict(registry, tmp_path):
    with pytest.raises(InputError, match="not pinned by digest"):
        load_base(f"{registry.host}/bases/tagged:1", strict=True, cache_dir=tmp_path / "c")
