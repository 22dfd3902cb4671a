"""The ``ocibuild`` command line: thin wiring over the library.

Each subcommand calls one library function. Results (digests, references,
JSON) go to stdout so commands compose; progress and warnings go to stderr.
Exit codes: 0 success, 1 user error (one ``error: …`` line, no traceback),
2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from .errors import OcibuildError, printable, redact
from .humanize import count as _count
from .humanize import short_digest as _short
from .humanize import size as _human

EXIT_OK, EXIT_USER, EXIT_USAGE = 0, 1, 2




def _err(message: str) -> None:
    print(redact(message), file=sys.stderr, flush=True)


# -- build -----------------------------------------------------------------------

def cmd_build(args: argparse.Namespace) -> int:
    from .cache import default_cache_dir
    from .pipeline import BuildContext, build_epoch

    signing_key = _check_build_flags(args)
    manifest = _load_build_input(Path(args.manifest), args.tag)
    from .layercache.tiered import open_cache

    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    layer_cache = open_cache(cache_dir, args.cache_repo, readonly=args.cache_repo_readonly,
                             required=args.cache_repo_required, insecure=args.insecure)
    progress = _open_progress(args)
    try:
        ctx = BuildContext(cache_dir=cache_dir, epoch=build_epoch(), log=progress.log,
                           strict=args.strict, insecure=args.insecure,
                           layer_cache=layer_cache, progress=progress, verbose=args.verbose)
        built, summary, out, written, images = _build_and_publish(args, manifest, ctx,
                                                                  signing_key)
    finally:
        progress.close()
    artifact = built.artifact
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    target = f"  →  {out}{'' if written else ' (unchanged)'}" if out else ""
    several = built.is_index
    for result, image in zip(built.results, images):
        width = max([len(r.name) for r in result.layers] + [4])
        for r in [] if args.quiet else result.layers:
            _err(f"✔ {r.name:<{width}}  {r.detail:<34} {_CACHE_WORDS.get(r.cache, r.cache):<10} "
                 f"{_human(r.layer.uncompressed_size):>9}  {_short(r.layer.digest)}")
        user = image["user"] or "root (0)"
        print(f"image  {image['digest']}  {image['platform'] + '  ' if several else ''}"
              f"{_count(len(result.image.layers), 'layer')}  {_human(image['compressed_size'])} "
              f"compressed, {_human(image['uncompressed_size'])} uncompressed  user {user}"
              f"{'' if several else target}")
    if several:
        print(f"index  {artifact.digest}  {_count(len(images), 'platform')}{target}")
    for ref in args.push or []:
        print(f"pushed {ref}@{summary['pushed']}")
    if out is None and not args.push:
        _err(f"nothing written: no -o FILE (or --push REF) given; the digest above is "
             f"the {'index' if several else 'image'} -o would write")
    return EXIT_OK


def _build_and_publish(args: argparse.Namespace, manifest: Any, ctx: Any, signing_key: Any
                       ) -> tuple[Any, dict[str, Any], Path | None, bool, list[dict[str, Any]]]:
    """build: the image(s), the output, push and supply chain (under the progress display)."""
    from .platforms import build, parse_platforms
    from .sinks.tarball import write_layout_dir, write_tarball

    if args.output:
        _check_output(Path(args.output), args.format, manifest, ctx.cache_dir)
        if args.sbom:
            from .sinks.atomic import check_file_output
            from .supply.commands import sbom_path
            check_file_output(sbom_path(Path(args.output), args.sbom), "--sbom")
    built = build(manifest, ctx, parse_platforms(args.platform or []))
    for warning in built.warnings:
        _err(f"warning: {warning}")
    artifact = built.artifact
    out = Path(args.output) if args.output else None
    written = False
    if out is not None:
        with ctx.progress.task(f"writing {out}", brief=True):
            if args.format == "oci-dir":
                write_layout_dir(artifact, out, built.name)
                written = True
            else:
                written = write_tarball(artifact, out, built.name, epoch=ctx.epoch,
                                        stamp_dir=ctx.cache_dir / "outputs")
    images = [_image_summary(r) for r in built.results]
    summary: dict[str, Any] = {"image": built.name, "digest": artifact.digest,
                               "output": str(out) if out else None, "output_written": written}
    if not built.is_index:
        summary.update(images[0])
    else:
        summary["media_type"] = artifact.manifest_media_type
        summary["platforms"] = images
    if args.push:
        from .registry.push import push_image
        summary["pushed"] = push_image(artifact, args.push, insecure=args.insecure,
                                       mount_from=ctx.layers.mount_sources(),
                                       progress=ctx.progress)
    for warning in ctx.layers.drain_warnings():  # a remote blob read while writing
        _err(f"warning: {warning}")
    if args.cache_repo:
        summary["cache_repo"] = ctx.layers.summary()
    if args.sbom or args.sign_key:
        summary.update(_build_supply(args, built, summary.get("pushed"), signing_key))
    return built, summary, out, written, images


def _open_progress(args: argparse.Namespace) -> Any:
    """Progress on stderr: live on a terminal, plain lines otherwise, none with -q."""
    from .progress import for_stream
    return for_stream(sys.stderr, quiet=getattr(args, "quiet", False))


def _image_summary(result: Any) -> dict[str, Any]:
    image = result.image
    return {
        "digest": image.digest,
        "platform": str(image.platform),
        "user": (image.config.get("config") or {}).get("User", ""),
        "compressed_size": image.compressed_size,
        "uncompressed_size": image.uncompressed_size,
        "layers": [{"name": r.name, "detail": r.detail, "digest": r.layer.digest,
                    "diff_id": r.layer.diff_id, "size": r.layer.size,
                    "uncompressed_size": r.layer.uncompressed_size,
                    "files": r.layer.file_count, "cached": r.cached, "cache": r.cache}
                   for r in result.layers],
    }


_CACHE_WORDS = {"local": "local hit", "remote": "remote hit", "built": "built",
                "pulled": "pulled"}


def _check_output(out: Path, fmt: str, manifest: Any, cache_dir: Path) -> None:
    """Refuse an ``-o`` that would destroy an input, before any work is done."""
    from .errors import InputError
    from .sinks.atomic import check_dir_output, check_file_output

    def real(path: Path) -> Path:  # Path.resolve raises RuntimeError on a symlink loop
        return Path(os.path.realpath(path))

    target = real(out)
    if fmt == "oci-archive" and out.is_dir() and not out.is_symlink():
        raise InputError(f"-o {out}: is a directory; give a file name for the tarball "
                         "(or --format oci-dir for a layout directory)")
    if fmt == "oci-dir":
        check_dir_output(out)
    else:
        check_file_output(out)
    inputs = [manifest.file] + [f.src for spec in manifest.layers for f in spec.files]
    inputs += [spec.tar for spec in manifest.layers if spec.tar is not None]
    for path in inputs:
        if target == real(Path(path)):
            raise InputError(f"-o {out}: would overwrite an input of the build ({path})")
    cache = real(cache_dir)
    if target == cache or cache in target.parents:
        raise InputError(f"-o {out}: is inside the cache directory {cache_dir}")
    if fmt == "oci-dir" and (target == real(Path.cwd()) or target in Path.cwd().parents):
        raise InputError(f"-o {out}: is the current directory or one of its parents")


def _check_build_flags(args: argparse.Namespace) -> Any:
    """Refuse flag combinations before any work; load the signing key up front, so a
    wrong password fails the build before anything is pushed."""
    from .errors import InputError

    if args.output == "":
        raise InputError("-o: the path is empty")
    if args.sbom and not args.output:
        raise InputError("--sbom writes the SBOM next to the image: give -o as well")
    if (args.cache_repo_readonly or args.cache_repo_required) and not args.cache_repo:
        raise InputError("--cache-repo-readonly and --cache-repo-required need --cache-repo "
                         "(or $OCIBUILD_CACHE_REPO)")
    if args.sign_key and not args.push:
        raise InputError("--sign-key signs the pushed image: give --push REF as well")
    if not args.sign_key:
        return None
    from .supply.sign import load_signing_key
    return load_signing_key(args.sign_key)


def _build_supply(args: argparse.Namespace, built: Any, pushed: str | None,
                  signing_key: Any) -> dict[str, Any]:
    """``build --sbom FORMAT`` (next to ``-o``) and ``build --push REF --sign-key KEY``."""
    from .supply.commands import build_sbom, sign_pushed

    out: dict[str, Any] = {}
    if args.sbom:
        paths = build_sbom(built.artifact, built.name, Path(args.output), args.sbom)
        out["sbom"] = str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]
        for path in paths:
            _err(f"sbom   {path}")
    if signing_key is not None and pushed:
        out["signatures"] = sign_pushed(args.push, pushed, signing_key,
                                        insecure=args.insecure)
        for sig in out["signatures"]:
            _err(f"signed {sig['reference']} → {sig['signature']}")
    return out


def _load_build_input(path: Path, tag: str | None):
    """A manifest, or a base definition (``base_images/cc.yaml``) built on its own."""
    from dataclasses import replace

    from .manifest import BaseSpec, ConfigSpec, Manifest, load_manifest, valid_image_name
    from .oci.types import Platform

    if path.suffix in (".yaml", ".yml") and path.is_file() and _is_base_definition(path):
        from .sources.debian import load_base_definition
        definition = load_base_definition(path)
        platforms = tuple(Platform("linux", a) for a in definition.architectures)
        manifest = Manifest(path.resolve(), tag or f"ocibuild/{definition.name}:latest",
                            Platform("linux", definition.architecture),
                            BaseSpec("definition", path=path.resolve()), (), ConfigSpec(),
                            platforms=platforms)
    else:
        manifest = load_manifest(path)
        if tag:
            manifest = replace(manifest, image=tag)
    if tag and not valid_image_name(tag):
        from .errors import InputError
        raise InputError(f"--tag {tag!r} is not a valid image name (lowercase "
                         "[registry/]repo[:tag])")
    return manifest


def _is_base_definition(path: Path) -> bool:
    from .sources.debian.definition import is_base_definition
    return is_base_definition(path)


# -- registry --------------------------------------------------------------------

def cmd_push(args: argparse.Namespace) -> int:
    from .registry.commands import push

    progress = _open_progress(args)
    try:
        result = push(args.image, args.refs, insecure=args.insecure,
                      on_event=_blob_events(args, progress), progress=progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        blobs = result["blobs"]
        _err(f"blobs: {blobs['uploaded']} uploaded ({_human(blobs['bytes_uploaded'])}), "
             f"{blobs['mounted']} mounted, {blobs['skipped']} already there")
        for ref in result["pinned"]:
            print(ref)
    return EXIT_OK


def _blob_events(args: argparse.Namespace, progress: Any):
    """push: a line per blob (skipped, mounted, uploaded) and per tag."""
    if getattr(args, "quiet", False) or getattr(args, "json", False):
        return None

    def on_event(kind: str, digest: str, size: int) -> None:
        progress.log(f"{kind:<9} {_short(digest)} {_human(size)}")
    return on_event


def cmd_pull(args: argparse.Namespace) -> int:
    from .registry.commands import pull
    from .sinks.atomic import check_file_output

    check_file_output(Path(args.output))
    progress = _open_progress(args)
    try:
        result = pull(args.ref, args.output, platform=args.platform, insecure=args.insecure,
                      progress=progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _err(f"pulled {result['reference']}: {_count(result['layers'], 'layer')} → "
             f"{result['output']}")
        print(result["pinned"])
    return EXIT_OK


def cmd_resolve(args: argparse.Namespace) -> int:
    from .registry.commands import resolve

    print(resolve(args.ref, insecure=args.insecure))
    return EXIT_OK


def cmd_login(args: argparse.Namespace) -> int:
    from .registry.commands import login

    if not args.password_stdin:
        from .errors import InputError
        raise InputError("login: pass the password on standard input with --password-stdin")
    result = login(args.registry, args.username, True, insecure=args.insecure)
    _err(f"login succeeded; credentials for {result['registry']} stored in {result['config']}")
    return EXIT_OK


# -- debian bases ----------------------------------------------------------------

def cmd_lock(args: argparse.Namespace) -> int:
    from .sources.debian import load_base_definition, lock_base

    definition = load_base_definition(Path(args.definition))
    progress = _open_progress(args)
    try:
        path = lock_base(definition, args.mirror, progress=progress,
                         cache_dir=Path(args.cache_dir) if args.cache_dir else None)
    finally:
        progress.close()
    print(path)
    return EXIT_OK


# -- supply chain ----------------------------------------------------------------

def cmd_keygen(args: argparse.Namespace) -> int:
    from .supply.keys import cosign_password, write_key_pair

    prefix = Path(args.output_key_prefix)
    write_key_pair(prefix, cosign_password, force=args.force)
    _err(f"private key written to {prefix}.key, public key to {prefix}.pub")
    print(f"{prefix}.key")
    print(f"{prefix}.pub")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    from .supply.sign import parse_annotations, sign

    result = sign(args.ref, args.key, annotations=parse_annotations(args.annotation),
                  insecure=args.insecure)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        _err(f"signed {result.reference}" + ("" if result.added else " (already signed)"))
        print(result.signature_ref)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from .supply.sign import parse_annotations
    from .supply.verify import verify

    result = verify(args.ref, args.key, annotations=parse_annotations(args.annotation),
                    check_reference=args.check_reference, insecure=args.insecure)
    return _report_verified(args, result, len(result.verified), "signature")


def cmd_sign_sbom(args: argparse.Namespace) -> int:
    """``sign`` with ``--attach-sbom FORMAT``: also attest the image's SBOM."""
    if not args.attach_sbom:
        return cmd_sign(args)
    from .supply.commands import sign_with_sbom
    from .supply.sign import parse_annotations

    result = sign_with_sbom(args.ref, args.key, args.attach_sbom,
                            annotations=parse_annotations(args.annotation),
                            insecure=args.insecure)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        attested = result.get("attestations") or [result["attestation"]]
        platforms = [a["platform"] for a in attested if "platform" in a]
        _err(f"signed {result['signature']['reference']}, SBOM ({args.attach_sbom}) attested"
             + (f" for {', '.join(platforms)}" if platforms else ""))
        print(result["signature"]["signature"])
        for done in attested:
            print(done["attestation"])
    return EXIT_OK


def cmd_attest(args: argparse.Namespace) -> int:
    from .supply.attest import attest

    result = attest(args.ref, args.predicate, args.type, args.key, insecure=args.insecure)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        _err(f"attested {result.reference} ({result.predicate_type})"
             + ("" if result.added else " (already attested)"))
        print(result.attestation_ref)
    return EXIT_OK


def cmd_verify_attestation(args: argparse.Namespace) -> int:
    from .supply.attest import verify_attestations

    result = verify_attestations(args.ref, args.key, args.type, insecure=args.insecure)
    return _report_verified(args, result, len(result.statements), "attestation")


def _report_verified(args: argparse.Namespace, result: Any, valid: int, what: str) -> int:
    """verify / verify-attestation: a count on stderr, the reference (or JSON) on stdout."""
    _err(f"verified {result.reference}: {_count(valid, 'valid ' + what)}"
         + (f", {len(result.rejected)} rejected" if result.rejected else ""))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.reference)
    return EXIT_OK


def cmd_sbom(args: argparse.Namespace) -> int:
    from .supply.sbom import generate_attributed, render
    from .supply.source import open_subject

    if args.output:
        from .sinks.atomic import check_file_output
        check_file_output(Path(args.output))
    subject = open_subject(args.image, insecure=args.insecure,
                           platform=_one_platform(args.platform))
    document, elf = generate_attributed(subject, args.format)
    data = render(document)
    _err(elf.summary())
    for line in elf.warnings():
        _err(f"warning: {line}")
    if args.output:
        from .supply.commands import write_bytes
        write_bytes(Path(args.output), data)
        _err(f"sbom ({args.format}) → {args.output}")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    """Audit the image, or every platform's image of an index (each must pass)."""
    from .supply.allowlist import load_allowlist
    from .supply.audit import RULES, audit, format_finding
    from .supply.source import open_subjects

    allowlist = load_allowlist(args.allowlist, RULES) if args.allowlist else ()
    subjects = open_subjects(args.image, insecure=args.insecure,
                             platform=_one_platform(args.platform))
    reports = [audit(s.image, name=s.name, digest=s.digest, fail_on=args.fail_on,
                     allowlist=allowlist) for s in subjects]
    passed = all(r.passed for r in reports)
    several = len(subjects) > 1
    if args.json:
        out = [dict(r.to_json(), platform=str(s.image.platform))
               for s, r in zip(subjects, reports)] if several else reports[0].to_json()
        print(json.dumps(out, indent=2))
        return EXIT_OK if passed else EXIT_USER
    for subject, report in zip(subjects, reports):
        where = f"{subject.image.platform}: " if several else ""
        for f in report.findings:
            print(f"{where}{format_finding(f)}")
        suppressed = f", {len(report.suppressed)} suppressed" if report.suppressed else ""
        _err(f"{where}audit {'passed' if report.passed else 'FAILED'}: "
             f"{_count(len(report.findings), 'finding')}, {len(report.failures)} at or above "
             f"{report.fail_on}{suppressed}")
    return EXIT_OK if passed else EXIT_USER


# -- inspect ---------------------------------------------------------------------

def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect import inspect_artifact

    report = inspect_artifact(Path(args.image), top=args.top,
                              platform=_one_platform(args.platform))
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    if "platforms" in report:
        print(f"index     {report['name'] or '(unnamed)'}")
        print(f"digest    {report['digest']}")
        for each in report["platforms"]:
            print()
            _print_inspected(each)
        return EXIT_OK
    _print_inspected(report)
    return EXIT_OK


def _one_platform(text: str | None) -> Any:
    from .platforms import parse_platforms

    platforms = parse_platforms([text] if text else [])
    if len(platforms) > 1:
        from .errors import InputError
        raise InputError(f"--platform {text}: name one platform")
    return platforms[0] if platforms else None


def _print_inspected(report: dict[str, Any]) -> None:
    cfg = report["config"]
    print(f"image     {report['name'] or '(unnamed)'}")
    print(f"digest    {report['digest']}")
    print(f"platform  {report['platform']}")
    print(f"size      {_human(report['compressed_size'])} compressed, "
          f"{_human(report['uncompressed_size'])} uncompressed, "
          f"{_count(report['files'], 'file')}")
    print(f"user      {cfg.get('User') or 'root (0)'}")
    for key, label in (("Entrypoint", "entrypoint"), ("Cmd", "cmd"), ("WorkingDir", "workdir")):
        if cfg.get(key):
            print(f"{label:<9} {json.dumps(cfg[key]) if isinstance(cfg[key], list) else cfg[key]}")
    for env in cfg.get("Env") or []:
        print(f"env       {env}")
    if cfg.get("ExposedPorts"):
        print(f"ports     {' '.join(sorted(cfg['ExposedPorts']))}")
    if cfg.get("Volumes"):
        print(f"volumes   {' '.join(sorted(cfg['Volumes']))}")
    if cfg.get("StopSignal"):
        print(f"stop      {cfg['StopSignal']}")
    for key, value in sorted((cfg.get("Labels") or {}).items()):
        print(f"label     {key}={value}")
    print("layers")
    for layer in report["layers"]:
        print(f"  {_short(layer['digest'])}  {_human(layer['size']):>9} compressed  "
              f"{_human(layer['uncompressed_size']):>9}  "
              f"{_count(layer['files'], 'file'):>11}  "
              f"{layer['name']}")
    print("largest files")
    for f in report["largest_files"]:
        print(f"  {_human(f['size']):>9}  {f['path']}")


# -- wiring ----------------------------------------------------------------------

_USAGE = """ocibuild MANIFEST.yaml -o image.tar [build options]   (short for: build)
       ocibuild COMMAND [options]"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocibuild", usage=_USAGE,
        description="Build minimal, reproducible OCI images for Python apps, without a daemon.",
        epilog="When the first argument is a .yaml/.yml file, the command is "
               "build: `ocibuild ocibuild.yaml -o image.tar` is `ocibuild build "
               "ocibuild.yaml -o image.tar`. `ocibuild build --help` lists its options.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("build", help="build an image from a manifest (or a base definition)")
    p.add_argument("manifest", help="the ocibuild.yaml manifest")
    p.add_argument("-o", "--output", help="write the image here (tarball or --format oci-dir)")
    p.add_argument("--format", choices=("oci-archive", "oci-dir"), default="oci-archive",
                   help="oci-archive: one tar readable as OCI archive and docker archive "
                        "(default); oci-dir: an OCI layout directory")
    p.add_argument("--json", action="store_true", help="print the build summary as JSON")
    p.add_argument("--cache-dir", help="cache directory (default $OCIBUILD_CACHE or "
                                       "~/.cache/ocibuild)")
    p.add_argument("--strict", action="store_true",
                   help="refuse a base image that is not pinned by digest, and sources "
                        "outside the manifest's folder")
    p.add_argument("--insecure", action="store_true",
                   help="allow plain HTTP / unverified TLS to registries")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also show PyInstaller warnings known to be harmless")
    p.set_defaults(func=cmd_build)
    _cache_repo_flags(p)

    p.add_argument("-t", "--tag", help="image name to write instead of the manifest's")
    p.add_argument("--platform", action="append", metavar="OS/ARCH[,…]",
                   help="build only these of the manifest's platforms (repeatable)")
    p.add_argument("--push", action="append", metavar="REF",
                   help="also push the image to REF (repeatable)")
    p.add_argument("--sbom", choices=("spdx-json", "cyclonedx-json"),
                   help="also write an SBOM next to the -o output (IMAGE.spdx.json / .cdx.json)")
    p.add_argument("--sign-key", metavar="KEY",
                   help="sign the pushed image with this cosign key (needs --push)")

    p = sub.add_parser("push", help="push an image tarball to a registry")
    p.add_argument("image", help="image tarball or OCI layout directory")
    p.add_argument("refs", nargs="+", metavar="REF", help="registry/repo:tag (several allowed)")
    _registry_flags(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("pull", help="pull an image from a registry into a tarball")
    p.add_argument("ref", help="registry/repo:tag or registry/repo@sha256:…")
    p.add_argument("-o", "--output", required=True, help="tarball to write")
    p.add_argument("--platform", help="os/arch[/variant] to pick from an index "
                                      "(default linux/amd64)")
    _registry_flags(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("resolve", help="print the digest a reference points at")
    p.add_argument("ref")
    _registry_flags(p, json_flag=False)
    p.set_defaults(func=cmd_resolve)

    p = sub.add_parser("login", help="store registry credentials like docker login")
    p.add_argument("registry")
    p.add_argument("-u", "--username", required=True)
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from standard input")
    _registry_flags(p, json_flag=False)
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("lock", help="resolve a base definition's Debian packages into a lock")
    p.add_argument("definition", help="base definition, e.g. base_images/cc.yaml")
    p.add_argument("--mirror", metavar="URL|SUITE=URL,…",
                   help="Debian mirror (default $OCIBUILD_DEBIAN_MIRROR, then the host's apt "
                        "sources); SUITE=URL pairs name one per suite")
    p.add_argument("--cache-dir", help="where the locked .debs are downloaded (default "
                                       "$OCIBUILD_CACHE or ~/.cache/ocibuild)")
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("keygen", help="write a cosign-format key pair (cosign.key, cosign.pub)")
    p.add_argument("--output-key-prefix", default="cosign",
                   help="write PREFIX.key and PREFIX.pub (default cosign)")
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.set_defaults(func=cmd_keygen)

    _signature_command(sub, "sign", cmd_sign, "sign an image in a registry, the way cosign does",
                       "private key (cosign.key, or a PEM EC key); password from "
                       "COSIGN_PASSWORD or a prompt", "add")
    _signature_command(sub, "verify", cmd_verify,
                       "verify an image's cosign signatures with a public key",
                       "public key (cosign.pub)", "require")

    sub.choices["verify"].add_argument(
        "--check-reference", action="store_true",
        help="also require the signed docker-reference to name this repository (cosign does "
             "not: a copy promoted with its .sig tag verifies by default)")

    p = sub.choices["sign"]
    p.add_argument("--attach-sbom", choices=("spdx-json", "cyclonedx-json"),
                   help="also attest the image's SBOM in this format (cosign attestation)")
    p.set_defaults(func=cmd_sign_sbom)

    p = sub.add_parser("attest", help="attach a signed in-toto attestation, as cosign attest")
    p.add_argument("ref", help="registry/repo:tag (resolved to its digest now) or "
                               "registry/repo@sha256:…")
    p.add_argument("--key", required=True, help="private key (cosign.key, or a PEM EC key); "
                                                "password from COSIGN_PASSWORD or a prompt")
    p.add_argument("--predicate", required=True, help="the predicate file (e.g. an SBOM)")
    p.add_argument("--type", default="custom", metavar="spdxjson|cyclonedx|…|URI",
                   help="predicate type: a cosign --type name or a URI (default custom)")
    _registry_flags(p)
    p.set_defaults(func=cmd_attest)

    p = sub.add_parser("verify-attestation",
                       help="verify an image's cosign attestations with a public key")
    p.add_argument("ref", help="registry/repo:tag (resolved to its digest now) or "
                               "registry/repo@sha256:…")
    p.add_argument("--key", required=True, help="public key (cosign.pub)")
    p.add_argument("--type", metavar="spdxjson|cyclonedx|…|URI",
                   help="only attestations of this predicate type")
    _registry_flags(p)
    p.set_defaults(func=cmd_verify_attestation)

    p = sub.add_parser("sbom", help="write an SPDX or CycloneDX SBOM of an image")
    p.add_argument("image", help="image tarball, OCI layout directory, or registry reference")
    p.add_argument("--format", choices=("spdx-json", "cyclonedx-json"), default="spdx-json")
    p.add_argument("-o", "--output", help="write here instead of standard output")
    _platform_flag(p, "of an image index, the image for this platform (needed for an index)")
    p.add_argument("--insecure", action="store_true",
                   help="allow plain HTTP and unverified TLS for this registry")
    p.set_defaults(func=cmd_sbom)

    p = sub.add_parser("audit", help="check an image for root user, shells, setuid, secrets…")
    p.add_argument("image", help="image tarball, OCI layout directory, or registry reference")
    p.add_argument("--fail-on", choices=("info", "low", "medium", "high", "critical"),
                   default="medium", help="lowest severity that fails the audit (default medium)")
    _platform_flag(p, "of an image index, audit only this platform's image (default: each)")
    p.add_argument("--allowlist", metavar="FILE",
                   help="YAML of accepted findings (rule, path glob, reason): shown as suppressed")
    _registry_flags(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("inspect", help="show an image tarball's config, layers, largest files")
    p.add_argument("image", help="image tarball or OCI layout directory")
    p.add_argument("--top", type=_positive_int, default=10,
                   help="how many of the largest files to list")
    _platform_flag(p, "of an image index, show only this platform's image (default: each)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)
    return parser


def _cache_repo_flags(p: argparse.ArgumentParser) -> None:
    import os

    p.add_argument("--cache-repo", metavar="REGISTRY/REPO",
                   default=os.environ.get("OCIBUILD_CACHE_REPO") or None,
                   help="also look layers up in (and push them to) this registry repository "
                        "(default $OCIBUILD_CACHE_REPO)")
    p.add_argument("--cache-repo-readonly", action="store_true",
                   help="read the cache repository, never write it (builds of untrusted "
                        "changes)")
    p.add_argument("--cache-repo-required", action="store_true",
                   help="fail the build when the cache repository cannot be used (default: "
                        "warn and build locally)")


def _signature_command(sub: Any, name: str, func: Callable[[argparse.Namespace], int],
                       help_text: str, key_help: str, verb: str) -> None:
    p = sub.add_parser(name, help=help_text)
    p.add_argument("ref", help="registry/repo:tag (resolved to its digest now) or "
                               "registry/repo@sha256:…")
    p.add_argument("--key", required=True, help=key_help)
    p.add_argument("-a", "--annotation", action="append", metavar="KEY=VALUE",
                   help=f"{verb} KEY=VALUE in the payload's optional section (repeatable)")
    _registry_flags(p)
    p.set_defaults(func=func)


def _platform_flag(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help=help_text)


def _registry_flags(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument("--insecure", action="store_true",
                   help="allow plain HTTP and unverified TLS for this registry")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print the result as JSON")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return value


def _version() -> str:
    from . import __version__
    return f"ocibuild {__version__}"


class _Terminated(BaseException):
    """Raised in the main thread on SIGTERM."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated()


def _on_sigterm(handler: Any) -> Any:
    import signal
    import threading

    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def _short_form(argv: list[str], commands: Any) -> list[str]:
    """``ocibuild manifest.yaml …`` means ``ocibuild build manifest.yaml …`` when the
    first argument is a YAML file's name (no command ends in .yaml)."""
    if argv and argv[0] not in commands and argv[0].endswith((".yaml", ".yml")):
        return ["build", *argv]  # a missing file then says "file not found"
    return argv


def _check_image_input(image: str | None) -> None:
    """An IMAGE argument (inspect, audit, sbom, push) that exists must be a file or a
    directory, refused before any work (:func:`~builder.sources.archive.check_image_path`)."""
    from .sources.archive import check_image_path

    if image:
        check_image_path(image)


def _describe_os_error(e: OSError, args: argparse.Namespace) -> str:
    """An OS error naming its path and whether it is the output, the cache or the
    temporary directory (a full disk says which of them is full)."""
    import tempfile

    from .cache import default_cache_dir
    from .oserrors import describe

    cache = getattr(args, "cache_dir", None) or default_cache_dir()
    return describe(e, [("the output", getattr(args, "output", None)), ("the cache", cache),
                        ("the temporary directory",
                         os.path.join(tempfile.gettempdir(), "ocibuild-"))])


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    commands = next(a.choices for a in parser._actions
                    if isinstance(a, argparse._SubParsersAction))
    args = parser.parse_args(_short_form(list(sys.argv[1:] if argv is None else argv),
                                         commands))
    func: Callable[[argparse.Namespace], int] = args.func
    # SIGTERM (CI cancelling a job, `timeout`) unwinds like Ctrl-C, so temporary files
    # are removed and no half-written output is left behind.
    previous = _on_sigterm(_terminate)
    try:
        _check_image_input(getattr(args, "image", None))
        return func(args)
    except OcibuildError as e:
        _err(f"error: {printable(str(e))}")
        return EXIT_USER
    except _Terminated:
        _err("terminated")
        return 143
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except OSError as e:
        _err(f"error: {printable(_describe_os_error(e, args))}")
        return EXIT_USER
    finally:
        _on_sigterm(previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
