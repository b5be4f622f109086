#!/usr/bin/env bash
# Two builds of one commit give byte-identical images. Builds the image a second time into
# out/repro with a fresh package cache (so packages are downloaded and unpacked again) and
# compares it with out/disk.img, which `make check` built just before with the same settings.
set -uo pipefail
cd "$(dirname "$0")/../.."
pass=0 fail=0
[[ -f out/disk.img ]] || { echo "no out/disk.img: run 'make image' first"; echo "0 passed, 1 failed"; exit 1; }

rm -rf out/repro
if ! make --no-print-directory image OUT=out/repro >out/repro.log 2>&1; then
  tail -n 20 out/repro.log
  echo "not ok second build failed (log: out/repro.log)"
  echo "0 passed, 1 failed"
  exit 1
fi

compare() {
  local name=$1 a=$2 b=$3
  if [[ ! -f $a && ! -f $b ]]; then
    echo "ok $name: neither build made one"
    pass=$((pass + 1))
  elif cmp -s "$a" "$b"; then
    echo "ok $name: identical ($(sha256sum <"$a" | cut -c1-16))"
    pass=$((pass + 1))
  else
    echo "not ok $name: $a and $b differ"
    cmp "$a" "$b" | head -n 1 | sed 's/^/    /'
    fail=$((fail + 1))
  fi
}
compare disk.img out/disk.img out/repro/disk.img
compare update.payload out/update.payload out/repro/update.payload
# When the disks differ these say where.
for part in root.img initrd esp.img cmdline; do
  compare "image/$part" "out/image/$part" "out/repro/image/$part"
done
[[ $fail -ne 0 ]] || rm -rf out/repro out/repro.log
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
