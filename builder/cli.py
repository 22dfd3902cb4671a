"""The ``ocibuild`` command line: thin wiring over the library.

Each subcommand calls one library function. Results (digests, references,
JSON) go to stdout so commands compose; progress and warnings go to stderr.
Exit codes: 0 success, 1 user error (one ``error: …`` line, no traceback),
2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from .errors import OcibuildError

EXIT_OK, EXIT_USER, EXIT_USAGE = 0, 1, 2


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1000 * 1000:
        return f"{n / 1000:.1f} kB" if n >= 1000 else f"{n} B"
    return f"{n / 1e6:.1f} MB"


def _short(digest: str) -> str:
    return digest[:19] + "…"


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- build -----------------------------------------------------------------------

def cmd_build(args: argparse.Namespace) -> int:
    from .manifest import load_manifest
    from .pipeline import BuildContext, build_epoch, build_image, default_cache_dir
    from .sinks.tarball import write_layout_dir, write_tarball

    manifest = load_manifest(args.manifest)
    ctx = BuildContext(cache_dir=Path(args.cache_dir) if args.cache_dir else default_cache_dir(),
                       epoch=build_epoch(), log=_err if not args.quiet else (lambda m: None),
                       strict=args.strict, insecure=args.insecure)
    result = build_image(manifest, ctx)
    for warning in result.warnings:
        _err(f"warning: {warning}")
    image = result.image
    out = Path(args.output) if args.output else None
    if out is not None:
        if args.format == "oci-dir":
            write_layout_dir(image, out, result.name)
        else:
            write_tarball(image, out, result.name, epoch=ctx.epoch)
    summary = {
        "image": result.name,
        "digest": image.digest,
        "output": str(out) if out else None,
        "platform": str(image.platform),
        "user": (image.config.get("config") or {}).get("User", ""),
        "compressed_size": image.compressed_size,
        "uncompressed_size": image.uncompressed_size,
        "layers": [{"name": r.name, "detail": r.detail, "digest": r.layer.digest,
                    "diff_id": r.layer.diff_id, "size": r.layer.size,
                    "uncompressed_size": r.layer.uncompressed_size,
                    "files": r.layer.file_count, "cached": r.cached}
                   for r in result.layers],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    width = max([len(r.name) for r in result.layers] + [4])
    for r in result.layers:
        _err(f"✔ {r.name:<{width}}  {r.detail:<34} {_human(r.layer.uncompressed_size):>9}  "
             f"{_short(r.layer.digest)}")
    user = summary["user"] or "root (0)"
    target = f"  →  {out}" if out else ""
    print(f"image  {image.digest}  {len(image.layers)} layers  "
          f"{_human(image.compressed_size)} compressed, {_human(image.uncompressed_size)} "
          f"uncompressed  user {user}{target}")
    return EXIT_OK


# -- inspect ---------------------------------------------------------------------

def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect import inspect_image

    report = inspect_image(Path(args.image), top=args.top)
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    cfg = report["config"]
    print(f"image     {report['name'] or '(unnamed)'}")
    print(f"digest    {report['digest']}")
    print(f"platform  {report['platform']}")
    print(f"size      {_human(report['compressed_size'])} compressed, "
          f"{_human(report['uncompressed_size'])} uncompressed, {report['files']} files")
    print(f"user      {cfg.get('User') or 'root (0)'}")
    for key, label in (("Entrypoint", "entrypoint"), ("Cmd", "cmd"), ("WorkingDir", "workdir")):
        if cfg.get(key):
            print(f"{label:<9} {json.dumps(cfg[key]) if isinstance(cfg[key], list) else cfg[key]}")
    for env in cfg.get("Env") or []:
        print(f"env       {env}")
    if cfg.get("ExposedPorts"):
        print(f"ports     {' '.join(sorted(cfg['ExposedPorts']))}")
    print("layers")
    for layer in report["layers"]:
        print(f"  {_short(layer['digest'])}  {_human(layer['size']):>9} compressed  "
              f"{_human(layer['uncompressed_size']):>9}  {layer['files']:>6} files  "
              f"{layer['name']}")
    print("largest files")
    for f in report["largest_files"]:
        print(f"  {_human(f['size']):>9}  {f['path']}")
    return EXIT_OK


# -- wiring ----------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocibuild",
        description="Build minimal, reproducible OCI images for Python apps, without a daemon.")
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
                   help="refuse a base image that is not pinned by digest")
    p.add_argument("--insecure", action="store_true",
                   help="allow plain HTTP / unverified TLS to registries")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("inspect", help="show an image tarball's config, layers, largest files")
    p.add_argument("image", help="image tarball or OCI layout directory")
    p.add_argument("--top", type=int, default=10, help="how many of the largest files to list")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)
    return parser


def _version() -> str:
    from . import __version__
    return f"ocibuild {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except OcibuildError as e:
        _err(f"error: {e}")
        return EXIT_USER
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
