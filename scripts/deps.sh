#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, if missing:
# protoc (protobuf-compiler) builds the etcd client, with the well-known
# types it imports (google/protobuf/*.proto, in libprotobuf-dev: only a
# recommendation of protobuf-compiler, which --no-install-recommends
# leaves out); etcd (etcd-server) is the real etcd the SC's tests start.
# Usage: scripts/deps.sh [build|test]
set -euo pipefail
missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
if [ "${1:-build}" = test ]; then
  command -v etcd >/dev/null || missing+=(etcd-server)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
