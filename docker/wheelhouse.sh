#!/bin/sh
# Fill docker/wheelhouse/ with the pinned wheels (docker/requirements.txt) from this machine's pip
# indexes, so `docker build --build-arg PIP_NO_INDEX=1` needs no network. Usage: docker/wheelhouse.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$here/wheelhouse"
echo '*' > "$here/wheelhouse/.gitignore"  # hundreds of MB of wheels: never committed
python -m pip download --quiet --prefer-binary --no-deps --dest "$here/wheelhouse" -r "$here/requirements.txt"
echo "$(find "$here/wheelhouse" -name '*.whl' | wc -l) wheels, $(du -sh "$here/wheelhouse" | cut -f1) in $here/wheelhouse"
