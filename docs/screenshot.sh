#!/usr/bin/env bash
# Regenerates docs/report.png and docs/stats-report.png: the complete fixture run and statistics
# job (workers/report/src/fixtures.rs) rendered by the report worker's code, photographed whole in
# headless Chromium. Needs chromium and python3 (Pillow is installed into a temporary venv to
# crop the blank bottom of the tall window). Run from anywhere: `bash docs/screenshot.sh`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
JAEGER_UI_URL=http://localhost:16686 cargo run -q -p swarm-report --example render_fixture -- "$work" >/dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check pillow

shoot() { # shoot PAGE PNG HEIGHT
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile" --hide-scrollbars --force-device-scale-factor=1 \
    --window-size=1040,"$3" --screenshot="$2" "file://$1" 2>/dev/null
  # Crop the blank rows under the page.
  "$work/venv/bin/python" - "$2" <<'PY'
import sys
from PIL import Image, ImageChops
path = sys.argv[1]
image = Image.open(path).convert("RGB")
background = Image.new("RGB", image.size, image.getpixel((image.width - 1, image.height - 1)))
box = ImageChops.difference(image, background).getbbox()
if box:
    image = image.crop((0, 0, image.width, min(image.height, box[3] + 24)))
image.save(path, optimize=True)
PY
}

shoot "$work/run.html" docs/report.png 9000
shoot "$work/stats.html" docs/stats-report.png 3000
echo "Wrote docs/report.png and docs/stats-report.png"
