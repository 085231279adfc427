#!/usr/bin/env bash
# Regenerates nbuild's derivation fixtures with real Nix (2.8):
#   testdata/nix/NAME.nix      an attribute set of derivations (the source)
#   testdata/store/            a chroot store; its nix/store/ holds the .drv
#                              files and sources Nix wrote (committed; the
#                              nix/var database is not)
#   testdata/roots/NAME.txt    "ATTR DRVPATH" per attribute, sorted by ATTR
#   testdata/golden/NAME/ATTR.show.json   `nix show-derivation -r` of it
# Run through `make fixtures`. Idempotent: the same inputs give the same bytes.
set -euo pipefail
cd "$(dirname "$0")"
td=$PWD
store=$td/store
features='nix-command ca-derivations impure-derivations'
nixflags=(--extra-experimental-features "$features" --store "$store")

rm -rf "$store" roots golden
mkdir -p roots golden
for f in nix/*.nix; do
  name=$(basename "$f" .nix)
  mkdir -p "golden/$name"
  attrs=$(nix-instantiate --extra-experimental-features "$features" --eval --json --strict \
    -E "builtins.attrNames (import ./$f)" | tr -d '[]"' | tr ',' ' ')
  for a in $attrs; do
    drv=$(nix-instantiate "${nixflags[@]}" "$f" -A "$a" 2>/dev/null)
    echo "$a $drv" >> "roots/$name.txt"
    nix "${nixflags[@]}" show-derivation -r "$drv" > "golden/$name/$a.show.json"
  done
done
# Nix leaves the store read-only; git only needs the files.
chmod -R u+w "$store"
rm -rf "$store/nix/var" "$store/nix/store/.links"
echo "refresh: $(ls "$store/nix/store" | grep -c '\.drv$') derivations in testdata/store" >&2
