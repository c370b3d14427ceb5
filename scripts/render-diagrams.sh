#!/usr/bin/env bash
# Renders the Mermaid blocks of docs/architecture.md into the SVGs committed next to it,
# in order: docs/architecture.svg, docs/architecture-upload.svg, docs/architecture-import.svg.
#
# Needs Node.js and a Chromium; nothing is installed into the repository:
#   mkdir -p /tmp/mmdc && (cd /tmp/mmdc && PUPPETEER_SKIP_DOWNLOAD=1 npm install @mermaid-js/mermaid-cli)
#   MMDC=/tmp/mmdc/node_modules/.bin/mmdc CHROMIUM=/usr/bin/chromium bash scripts/render-diagrams.sh
set -euo pipefail

cd "$(dirname "$0")/.."
MMDC="${MMDC:-/tmp/mmdc/node_modules/.bin/mmdc}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
OUTPUTS=(docs/architecture.svg docs/architecture-upload.svg docs/architecture-import.svg)

[ -x "$MMDC" ] || { echo "mermaid-cli not found at $MMDC (see the header of $0)" >&2; exit 1; }
[ -x "$CHROMIUM" ] || { echo "Chromium not found at $CHROMIUM" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/puppeteer.json" <<EOF
{
  "executablePath": "$CHROMIUM",
  "args": ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run"]
}
EOF

# Split the ```mermaid blocks into block-1.mmd, block-2.mmd, …
awk -v dir="$work" '
  /^```mermaid$/ { n++; inside = 1; next }
  /^```$/ && inside { inside = 0; next }
  inside { print > (dir "/block-" n ".mmd") }
' docs/architecture.md

count="$(ls "$work"/block-*.mmd | wc -l)"
if [ "$count" -ne "${#OUTPUTS[@]}" ]; then
  echo "docs/architecture.md has $count Mermaid blocks; this script names ${#OUTPUTS[@]} outputs" >&2
  exit 1
fi
for i in "${!OUTPUTS[@]}"; do
  "$MMDC" --quiet -p "$work/puppeteer.json" -b white \
    -i "$work/block-$((i + 1)).mmd" -o "${OUTPUTS[$i]}"
  echo "rendered ${OUTPUTS[$i]}"
done
