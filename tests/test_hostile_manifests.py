"""Hostile manifests: alias bombs, deep nesting, huge numbers and files, unknown
platforms, FIFOs and injected control characters end in one clear ``error:`` line
naming file:line:field, fast and in bounded memory (the limits are in yamlspec)."""

from __future__ import annotations

import os

import pytest

from builder.manifest import load_manifest
from builder.yamlspec import MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_VALUES
from hostile import assert_unchanged, refused, snapshot
from registry_fixtures import make_image, registry  # noqa: F401 - fixture

LAYER = "layers: [{name: a, directories: [{path: /x}]}]\n"


def _write(tmp_path, text, name="m.yaml"):
    path = tmp_path / name
    path.write_text(text) if isinstance(text, str) else path.write_bytes(text)
    return path


def _refused_manifest(tmp_path, text, match, name="m.yaml"):
    manifest = _write(tmp_path, text, name)
    before = snapshot(tmp_path, os.environ["OCIBUILD_CACHE"])
    outcome = refused(["build", manifest, "-o", tmp_path / "out.tar"], cwd=tmp_path,
                      match=match)
    assert_unchanged(before, snapshot(tmp_path, os.environ["OCIBUILD_CACHE"]))
    return outcome


def _laughs(levels=9, width=9):
    lines = ['l0: &l0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "image: a/b:1\n" + LAYER + "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_at_its_first_big_alias(tmp_path):
    _refused_manifest(tmp_path, _laughs(), rf"m\.yaml:\d+: holds more than {MAX_YAML_VALUES} "
                                           r"values, each alias counted")


def test_an_alias_bomb_through_merge_keys_is_refused(tmp_path):
    lines = ["m0: &m0 {a: 1, b: 2, c: 3}"]
    for i in range(1, 10):
        lines.append(f"m{i}: &m{i}\n  <<: [" + ", ".join([f"*m{i - 1}"] * 9) + "]")
    _refused_manifest(tmp_path, "image: a/b:1\n" + LAYER + "\n".join(lines) + "\n",
                      r"MAX_YAML_VALUES")


def test_an_alias_inside_its_own_anchor_is_refused_as_a_cycle(tmp_path):
    _refused_manifest(tmp_path, "image: a/b:1\n" + LAYER + "x: &x [1, *x]\n",
                      r"m\.yaml:3: an alias names a mapping or list it is inside of")


def test_a_mapping_that_contains_itself_is_refused(tmp_path):
    _refused_manifest(tmp_path, "image: a/b:1\nconfig: &c {labels: *c}\n" + LAYER,
                      r"m\.yaml:2: .*cycle")


def test_5000_levels_of_flow_nesting_is_a_clear_error(tmp_path):
    _refused_manifest(tmp_path, "image: a/b:1\n" + LAYER + "x: " + "[" * 5000 + "]" * 5000
                      + "\n", rf"m\.yaml:3: nested more than {MAX_YAML_DEPTH} levels deep")


def test_deep_block_nesting_is_a_clear_error(tmp_path):
    text = "image: a/b:1\n" + LAYER + "".join("  " * i + f"k{i}:\n" for i in range(300))
    _refused_manifest(tmp_path, text, rf"nested more than {MAX_YAML_DEPTH} levels")


def test_a_5000_digit_integer_names_its_field(tmp_path):
    text = ("image: a/b:1\nlayers: [{name: a, directories: [{path: /x, uid: "
            + "9" * 5000 + "}]}]\n")
    outcome = _refused_manifest(tmp_path, text,
                                r"m\.yaml:2: layers\[0\]\.directories\[0\]\.uid: a 5000-character "
                                r"number is too large")
    assert "9" * 100 not in outcome.error


def test_a_3000_digit_uid_is_out_of_range_without_echoing_it(tmp_path):
    text = ("image: a/b:1\nlayers: [{name: a, directories: [{path: /x, uid: "
            + "7" * 3000 + "}]}]\n")
    outcome = _refused_manifest(tmp_path, text, r"uid: a 3000-digit number is out of range")
    assert "7" * 50 not in outcome.error


def test_a_50_mb_string_is_refused_by_size_before_parsing(tmp_path):
    big = "image: a/b:1\n" + LAYER + "x: '" + "a" * (50 * 1024 * 1024) + "'\n"
    outcome = _refused_manifest(tmp_path, big, rf"m\.yaml: is larger than "
                                               rf"{MAX_YAML_BYTES // 1024} KiB")
    assert outcome.seconds < 5


def test_a_manifest_just_over_the_size_cap_is_refused(tmp_path):
    text = "image: a/b:1\n" + LAYER + "#" * (MAX_YAML_BYTES - len(LAYER)) + "\n"
    _refused_manifest(tmp_path, text, r"MAX_YAML_BYTES")


def test_a_dense_list_under_the_size_cap_stops_at_the_value_limit(tmp_path):
    text = "image: a/b:1\n" + LAYER + "x: [" + ",".join(["1"] * 100_000) + "]\n"
    assert len(text) < MAX_YAML_BYTES
    _refused_manifest(tmp_path, text, r"m\.yaml:3: holds more than")


def test_a_huge_value_in_an_error_is_cut_short(tmp_path):
    text = "image: a/b:1\ncompression: " + "x" * 100_000 + "\n" + LAYER
    outcome = _refused_manifest(tmp_path, text, r"m\.yaml:2: compression: 'xxx.* is not one of")
    assert "characters left out" in outcome.error


@pytest.mark.parametrize("platform, match", [
    ("windows/z80", r"m\.yaml:2: platform: os 'windows' is not supported"),
    ("linux/z80", r"m\.yaml:2: platform: 'z80' is not a linux architecture"),
    ("linux/arm64/v7", r"m\.yaml:2: platform: 'v7' is not a variant of arm64"),
    ("linux/amd64/v9", r"platform: 'v9' is not a variant of amd64"),
    ("linux/s390x/v1", r"platform: 'v1' is not a variant of s390x \(known: none\)"),
])
def test_a_platform_oci_does_not_define_for_linux_is_refused(tmp_path, platform, match):
    _refused_manifest(tmp_path, f"image: a/b:1\nplatform: {platform}\n" + LAYER, match)


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64/v8", "linux/arm/v7",
                                      "linux/386", "linux/riscv64", "linux/amd64/v3"])
def test_the_platforms_oci_defines_for_linux_are_accepted(tmp_path, platform):
    manifest = _write(tmp_path, f"image: a/b:1\nplatform: {platform}\n" + LAYER)
    assert str(load_manifest(manifest).platform) == platform


def test_a_manifest_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "m.yaml")
    refused(["build", tmp_path / "m.yaml", "-o", tmp_path / "out.tar"], cwd=tmp_path,
            match=r"m\.yaml: is not a regular file")


def test_a_manifest_that_is_a_symlink_loop_is_a_clear_error(tmp_path):
    os.symlink("b.yaml", tmp_path / "m.yaml")
    os.symlink("m.yaml", tmp_path / "b.yaml")
    refused(["build", tmp_path / "m.yaml", "-o", tmp_path / "out.tar"], cwd=tmp_path,
            match=r"m\.yaml: cannot read: Too many levels of symbolic links")


def test_a_key_with_control_characters_cannot_forge_an_error_line(tmp_path):
    text = "image: a/b:1\n" + LAYER + '"x\\nerror: all good\\e[2J": 1\n'
    outcome = _refused_manifest(tmp_path, text, r"m\.yaml:3: .*unknown key")
    assert "\x1b" not in outcome.stderr and "\nerror: all good" not in outcome.stderr


def test_a_manifest_that_is_not_utf8_is_a_clear_error(tmp_path):
    _refused_manifest(tmp_path, b"image: a/b:1\n" + LAYER.encode() + b"x: \xff\xfe\n",
                      r"m\.yaml: cannot read: not UTF-8")


def test_a_python_object_tag_is_refused(tmp_path):
    _refused_manifest(tmp_path, "image: !!python/name:os.system ''\n" + LAYER,
                      r"m\.yaml:1: image: unsupported YAML value")


def test_an_alias_bomb_in_a_base_definition_names_that_file(tmp_path):
    _write(tmp_path, _laughs().replace("image: a/b:1\n" + LAYER, "name: x\n"), "base.yaml")
    _refused_manifest(tmp_path, "image: a/b:1\nbase: base.yaml\n" + LAYER,
                      r"base\.yaml:\d+: holds more than")


@pytest.mark.parametrize("config, field", [
    ('{env: {A: "x\\0y"}}', r"config\.env\.A"),
    ('{entrypoint: ["/bin/a\\0b"]}', r"config\.entrypoint\[0\]"),
    ('{cmd: "run \\0"}', r"config\.cmd"),
    ('{labels: {"k\\0": v}}', r"config\.labels"),
])
def test_a_nul_in_what_a_program_receives_is_refused(tmp_path, config, field):
    _refused_manifest(tmp_path, "image: a/b:1\n" + LAYER + f"config: {config}\n",
                      rf"m\.yaml:3: {field}.*: contains a NUL character")


def test_more_layers_than_docker_runs_is_refused_before_building(tmp_path):
    from builder.manifest import MAX_LAYERS

    layers = "".join(f"  - {{name: l{i}, directories: [{{path: /d{i}}}]}}\n"
                     for i in range(MAX_LAYERS + 1))
    _refused_manifest(tmp_path, "image: a/b:1\nlayers:\n" + layers,
                      rf"m\.yaml:3: layers: {MAX_LAYERS + 1} layers: an image may have at most "
                      rf"{MAX_LAYERS} \(MAX_LAYERS\)")


def test_a_base_whose_layers_leave_no_room_is_refused_naming_base(tmp_path, registry):
    from builder.manifest import MAX_LAYERS
    from builder.registry.push import push_image

    digest = push_image(make_image(tmp_path / "img", "deep", layers=MAX_LAYERS, size=10),
                        [f"{registry.host}/hostile/deep:1"], insecure=True)
    manifest = _write(tmp_path, f"image: a/b:1\nbase: {registry.host}/hostile/deep@{digest}\n"
                      + LAYER)
    before = snapshot(tmp_path)  # the pulled base may land in the cache; nothing else
    refused(["build", manifest, "-o", tmp_path / "out.tar", "--insecure"], cwd=tmp_path,
            match=rf"m\.yaml:2: base: {MAX_LAYERS} base layers and 1 of its own make more "
                  rf"than {MAX_LAYERS}")
    assert_unchanged(before, snapshot(tmp_path))
