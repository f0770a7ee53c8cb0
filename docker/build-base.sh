#!/bin/sh
# Build a minimal Debian bookworm + python3 base image with no registry: debootstrap a root
# filesystem from the apt mirror and `docker import` it. Used by the image test, where
# python:3.11-slim cannot be pulled. Usage: docker/build-base.sh [TAG]
set -eu
TAG=${1:-kdflow-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "$TAG already present"
    exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# python3-venv: the Dockerfile's builder stage creates /opt/venv with it
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$MIRROR"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' - "$TAG"
echo "built $TAG"
