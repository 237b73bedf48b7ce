#!/bin/sh
# Build the offline Python base image from Debian packages (no registry needed).
# Usage: build-base.sh TAG MIRROR
# debootstrap a minimal bookworm with Python 3.11, trim what a runtime never reads,
# and import it as a single-layer image. Runs on the Docker host, as root.
set -eu
tag="$1"
mirror="${2:-http://deb.debian.org/debian}"
work="$(mktemp -d /var/tmp/stack-base.XXXXXX)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
# Trim: documentation, locales, package indexes and caches, Python's test suite and
# GUI modules, bytecode caches. apt and dpkg stay so builder stages can add packages.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
       "$root"/usr/share/locale/* "$root"/usr/share/lintian "$root"/usr/share/common-licenses \
       "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
       "$root"/var/log/* "$root"/usr/lib/python3.11/test "$root"/usr/lib/python3.11/idlelib \
       "$root"/usr/lib/python3.11/tkinter "$root"/usr/lib/python3.11/lib2to3 \
       "$root"/usr/lib/python3.11/pydoc_data "$root"/usr/lib/python3.11/ensurepip
find "$root"/usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} +
printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\npath-exclude /usr/share/info/*\n' \
    >"$root"/etc/dpkg/dpkg.cfg.d/01-trim
printf 'APT::Install-Recommends "0";\nAPT::Install-Suggests "0";\n' >"$root"/etc/apt/apt.conf.d/01-no-recommends
tar -C "$root" -c . | docker import \
    -c 'ENV LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1' \
    -c 'CMD ["python3"]' - "$tag" >/dev/null
echo "built $tag"
