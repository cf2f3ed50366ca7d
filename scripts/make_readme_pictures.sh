#!/usr/bin/env bash
# Makes the README's pictures end to end:
#   docs/figures/gallery.png      blurred | deblurred | estimated kernel | true kernel | sharp, for
#                                 a Levin et al. real capture and a synthetically blurred colour photo
#   docs/figures/tensorboard.png  TensorBoard's time-series dashboard of the colour run (scalars and
#                                 image panels), screenshot by headless Chromium
# Both runs use configs/fast.yaml (with quickstart.yaml's logging intervals) with seed 0; they go to
# logs/readme_pictures/ (git-ignored). A run whose metrics.json says "done" is kept, so a second
# call only redraws the pictures; delete logs/readme_pictures/ to redo the runs.
#
#   scripts/make_readme_pictures.sh     (about 12 minutes on one CPU thread, mostly the Levin run)
#
# Environment: PYTHON (default .venv/bin/python, set up by scripts/setup.sh), CHROMIUM (default
# the first of chromium, chromium-browser, google-chrome on PATH; Debian: apt-get install chromium),
# SHARED_DATA (default ../shared/data: kodak/ and levin/ as in the project's sample data).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PYTHON:-}" ]]; then
    scripts/setup.sh
    PYTHON=.venv/bin/python
fi
TENSORBOARD="$(dirname "$PYTHON")/tensorboard"
DATA="${SHARED_DATA:-../shared/data}"
OUT=logs/readme_pictures
LEVIN_RUN=levin_im1_kernel3
COLOUR_RUN=kodim07_levin09_k2
mkdir -p "$OUT" docs/figures

# Colour photo: a 128×128 crop (the most textured window) of kodim07, blurred by Levin's kernel 2
# halved (17 -> 9 px), plus 1 % noise. synth writes the sharp crop and the kernel next to it.
"$PYTHON" -m lightning_deblur synth --images "$DATA/kodak/kodim07.png" --kernels "$DATA/levin/kernels/levin09_k2.npy" \
    --output_dir "$OUT/data" --size 128 --colour true --kernel_scale 0.5 --noise_std 0.01 --seed 0

# compact_png IN OUT SCALE COLOURS: IN shrunk by SCALE and reduced to an adaptive palette of
# COLOURS, written to OUT, so that the committed PNGs stay small (< 300 KB).
compact_png() {
    "$PYTHON" - "$@" <<'EOF'
import sys

from PIL import Image

from lightning_deblur.core.imagefiles import atomic_write

source, output, scale, colours = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
with Image.open(source) as opened:
    picture = opened.convert("RGB")
if scale != 1:
    picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.LANCZOS)
palette = picture.quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
atomic_write(output, lambda temporary: palette.save(temporary, format="PNG", optimize=True))
print(output)
EOF
}

# fit_run NAME FIT_OPTIONS...: one quickstart job into $OUT/NAME/seed0, unless it finished before.
fit_run() {
    local name="$1"
    shift
    local run="$OUT/$name/seed0"
    if grep -qs '"status": "done"' "$run/metrics.json"; then
        echo "kept $run (finished earlier)"
        return
    fi
    # A half-written folder would mix two runs' TensorBoard events.
    rm -rf "$run"
    "$PYTHON" -m lightning_deblur fit --config configs/fast.yaml --config configs/quickstart.yaml --seed_everything 0 "$@" \
        --trainer.logger.init_args.save_dir "$OUT" --trainer.logger.init_args.name "$name" \
        --trainer.logger.init_args.version seed0
}

# Levin real capture: image 1 with kernel 3 (15×15), 255×255 grey, as the camera recorded it.
fit_run "$LEVIN_RUN" --data.image "$DATA/levin/im1_kernel3_img.png" --data.sharp "$DATA/levin/gt/im1.png" \
    --data.kernel_size 15
# Kernel size 11: an upper bound of the 9×9 blur, so that the estimate has room around it.
fit_run "$COLOUR_RUN" --data.image "$OUT/data/blurred/kodim07_levin09_k2.png" \
    --data.sharp "$OUT/data/sharp/kodim07_levin09_k2.png" --data.kernel_size 11

"$PYTHON" -m lightning_deblur figures gallery --runs "$OUT/$LEVIN_RUN/seed0" "$OUT/$COLOUR_RUN/seed0" \
    --true_kernels "$DATA/levin/kernels/levin09_k3.npy" "$OUT/data/kernels/levin09_k2.npy" \
    --labels "Levin et al. real capture (im1, kernel 3)" "kodim07 crop, synthetic blur" \
    --output "$OUT/gallery.png"
# Photos keep their look with 256 colours; the full resolution keeps kernel pixels crisp.
compact_png "$OUT/gallery.png" docs/figures/gallery.png 1 256

# TensorBoard screenshot. A free port, so that another TensorBoard on this machine is not hit.
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}"
if [[ -z "$CHROMIUM" ]]; then
    echo "error: no Chromium for the TensorBoard screenshot; apt-get install chromium, or set CHROMIUM" >&2
    exit 2
fi
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$TENSORBOARD" --logdir "$OUT/$COLOUR_RUN" --port "$PORT" --bind_all >"$OUT/tensorboard.log" 2>&1 &
TB_PID=$!
SHOT=$(mktemp --suffix .png)
trap 'kill "$TB_PID" 2>/dev/null || true; rm -f "$SHOT"' EXIT
for _ in $(seq 60); do
    curl -sf "http://localhost:$PORT/data/runs" >/dev/null && break
    sleep 1
done
# The time-series dashboard filtered to the loss and its terms, psnr and the estimate's image
# and kernel; the click closes the settings pane, which would squeeze the charts.
"$PYTHON" scripts/browser_screenshot.py --chromium "$CHROMIUM" --width 1700 --height 1600 --wait 20 \
    --click 'h2 + button' "http://localhost:$PORT/?tagFilter=%5E(psnr%7Closs%7Cestimate)#timeseries" "$SHOT"

# Two thirds of the size still reads; 256 colours keep the text sharp and the estimate photo-like.
compact_png "$SHOT" docs/figures/tensorboard.png 0.6667 256
