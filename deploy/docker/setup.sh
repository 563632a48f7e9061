#!/usr/bin/env bash
# Writes deploy/docker/conf/{alpha,bravo,charlie}/: the cluster CA, each member's certificate (valid
# for its compose host name, localhost and 127.0.0.1, so the container's health check verifies it),
# the vendor public key to trust, and triadd.conf. Needs triadd on PATH or in bin/ (make build).
#   deploy/docker/setup.sh VENDOR.pub
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
triadd=$(command -v triadd || echo "$here/../../bin/triadd")
[ $# -eq 1 ] || { echo "usage: $0 VENDOR.pub (triadctl vendor keygen makes one)" >&2; exit 2; }
conf="$here/conf"
mkdir -p "$conf"
[ -e "$conf/ca/ca.crt" ] || "$triadd" tls init-ca --dir "$conf/ca"
for name in alpha bravo charlie; do
  d="$conf/$name"
  mkdir -p "$d"
  "$triadd" tls issue --ca-dir "$conf/ca" --member "$name" --host "$name,localhost,127.0.0.1" --out "$d"
  cp "$conf/ca/ca.crt" "$d/ca.crt"
  cp "$1" "$d/vendor.pub"
  cat > "$d/triadd.conf" <<CONF
{
  "name": "$name",
  "data_dir": "/var/lib/triad",
  "listen": ":4085",
  "raft_listen": ":4086",
  # No raft_advertise: formation records the failover address by host name ($name:4086),
  # which still works when the container gets a new IP.
  "http_listen": ":4080",
  "http_tls": true,
  "trust": ["/etc/triad/vendor.pub"],
  "tls_ca": "/etc/triad/ca.crt",
  "tls_cert": "/etc/triad/$name.crt",
  "tls_key": "/etc/triad/$name.key"
}
CONF
  # The image runs as uid 65532: it must read the key.
  chmod 0644 "$d"/*.crt "$d/triadd.conf" "$d/vendor.pub"
  if [ "$(id -u)" = 0 ]; then chown 65532 "$d/$name.key"; chmod 0600 "$d/$name.key"
  else chmod 0644 "$d/$name.key"; echo "note: $d/$name.key is world-readable (run as root to give it to uid 65532 only)" >&2; fi
done
echo "configuration written to $conf (the CA key stays in $conf/ca: keep it safe)"
