#!/usr/bin/env bash
# Builds the local demo/test image from Debian's static busybox: no registry is needed.
# Usage: deploy/build-image.sh [NAME:TAG]   (default gorchester/busybox:latest)
set -euo pipefail
image="${1:-gorchester/busybox:latest}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "image $image already present"; exit 0
fi
busybox="$(command -v busybox || true)"
[ -n "$busybox" ] || { echo "busybox-static is not installed" >&2; exit 1; }
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/www" "$root/etc" "$root/data"
cp "$busybox" "$root/bin/busybox"
for applet in sh ash httpd nc sleep wget cat echo ls env ps kill true false yes seq sed grep head tail \
              mkdir rm touch date hostname id nslookup ping printf test timeout dd top free uptime; do
  ln -s busybox "$root/bin/$applet"
done
echo "ok" > "$root/www/index.html"
echo "ok" > "$root/www/health"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/bin' \
  --change 'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]' \
  - "$image" >/dev/null
echo "built $image"
