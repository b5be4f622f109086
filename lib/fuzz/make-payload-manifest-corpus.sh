#!/usr/bin/env bash
# Regenerates the seed corpus of fuzz-payload-manifest: the head (header, manifest, signature)
# of a few small payloads made by out/bin/pivot-payload, and some damaged variants.
#   lib/fuzz/make-payload-manifest-corpus.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s out/bin/pivot-payload
out=lib/fuzz/corpus/payload-manifest
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
out/bin/pivot-payload keygen --out-private "$tmp/k.pem" --out-public "$tmp/k.pub"
hash=$(printf 'corpus' | sha256sum | cut -c1-64)
head_of() { # payload -> its first data_offset bytes
        local off
        off=$(out/bin/pivot-payload show --json "$1" | sed -E 's/.*"data_offset":([0-9]+).*/\1/')
        head -c "$off" "$1"
}
make_one() { # name root-bytes kernel-bytes initrd-bytes version min-version cmdline chunk
        head -c "$2" /dev/zero | tr '\0' 'r' >"$tmp/root"
        head -c "$3" /dev/zero | tr '\0' 'k' >"$tmp/kernel"
        head -c "$4" /dev/zero | tr '\0' 'i' >"$tmp/initrd"
        out/bin/pivot-payload create --quiet --root "$tmp/root" --kernel "$tmp/kernel" \
                --initrd "$tmp/initrd" --cmdline "$7" --verity-roothash "$hash" --version "$5" \
                --min-version "$6" --key "$tmp/k.pem" --out "$tmp/$1.payload" --chunk-size "$8"
        head_of "$tmp/$1.payload" >"$out/$1"
}
make_one small 1000 100 100 1.0.0 0.0.0 "console=ttyS0" 64K
make_one multi 300000 70000 140000 3815.2.0 3760.0.0 "console=ttyS0 quiet pivot.verity.roothash=$hash" 64K
make_one prerelease 65536 65537 1 2.0.0-rc.1+build7 1.9.9 "root=/dev/mapper/root" 1M
# Damaged: cut inside the manifest, a flipped magic, a format version from the future.
head -c 200 "$out/multi" >"$out/cut-manifest"
{ printf 'PIVOTPAX'; tail -c +9 "$out/small"; } >"$out/bad-magic"
{ head -c 8 "$out/small"; printf '\003'; tail -c +10 "$out/small"; } >"$out/format-3"
ls -l "$out"
