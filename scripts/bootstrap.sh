#!/usr/bin/env bash
# Install what ocibuild's tests and examples need on a Debian/Ubuntu machine:
# the real peers the tests check against, and the project itself (editable).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# docker.io: the tests start a dockerd of their own (tests/docker_engine.py).
# python3-venv: Debian's own Python, a second host Python for the hermetic-freeze test.
# time: /usr/bin/time, bench/'s peak-RSS meter.
PACKAGES=(skopeo umoci runc podman docker-registry busybox-static apache2-utils
          gnupg dpkg-dev gcc binutils ca-certificates pigz zstd buildah
          openssh-client qemu-user-static binfmt-support docker.io bubblewrap
          python3-venv time)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Foreign-architecture images (arm64 on amd64) run through qemu-user via binfmt_misc.
# In a container (or with policy-rc.d) the package's service does not start, so the
# handler is registered here; update-binfmts mounts binfmt_misc when it is not.
if [ "$(uname -m)" != aarch64 ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  $SUDO update-binfmts --enable qemu-aarch64 || echo "warning: could not register the" \
    "qemu-aarch64 binfmt_misc handler; arm64 images will not run here" >&2
fi

# A Debian-packaged Python refuses system-wide installs (PEP 668); a CI runner or a
# throwaway machine is what this script is for, so install there anyway.
python3 -m pip install -q --disable-pip-version-check -e '.[test]' 2>/dev/null \
  || python3 -m pip install -q --disable-pip-version-check --break-system-packages -e '.[test]'
