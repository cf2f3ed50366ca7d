#!/usr/bin/env bash
# GPU day: every GPU measurement in one prepared run, on a bare GPU machine whose Python
# has torch and Lightning (e.g. one H100/H200; about 10 minutes).
#
#   benchmarks/gpu_day.sh            results under $OUT (or a new temporary folder)
#   benchmarks/gpu_day.sh --smoke    the same steps at tiny sizes, on any CPU (seconds)
#
# 1. step-level figures (benchmarks/gpu_day.py): direct vs FFT blur, float32 vs bf16,
#    contiguous vs channels_last, torch.compile  ->  $OUT/gpu_day_steps.json
#    and batched seeds (benchmarks/batched_seeds.py)  ->  $OUT/batched_seeds_cuda_*.json
# 2. the full-fidelity bank's jobs (benchmarks/full_fidelity_bank.py), every method side
#    by side, several jobs per GPU, until BANK_SECONDS (default 420) have passed; the
#    finished runs' small files  ->  $OUT/bank.tgz (unpack into benchmarks/results/).
# Missing pure-Python dependencies travel as wheels in .whl/ (see docs/RESULTS.md).
set -uo pipefail
cd "$(dirname "$0")/.."

smoke=0
[ "${1:-}" = "--smoke" ] && smoke=1
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
python=${PYTHON:-python3}
[ -x .venv/bin/python ] && python=${PYTHON:-.venv/bin/python}

if ! "$python" -c "import jsonargparse, png, docstring_parser, typeshed_client" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$python" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_day_site .whl/*.whl || exit 1
        export PYTHONPATH=/tmp/gpu_day_site${PYTHONPATH:+:$PYTHONPATH}
    else
        echo "gpu_day: jsonargparse, pypng, docstring_parser or typeshed_client missing and no wheels in .whl/" >&2
        exit 2
    fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
"$python" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())"
command -v nvidia-smi >/dev/null && nvidia-smi >"$out/nvidia-smi.txt" 2>&1

# MPS lets the concurrent jobs' small kernels share the GPU; without it they take turns.
mps=0
if [ $smoke = 0 ] && command -v nvidia-cuda-mps-control >/dev/null; then
    if nvidia-cuda-mps-control -d 2>/dev/null && "$python" -c "import torch; torch.ones(1).cuda()" 2>/dev/null; then
        mps=1
    else
        echo quit | nvidia-cuda-mps-control 2>/dev/null
    fi
fi
echo "gpu_day: MPS $mps" | tee "$out/mps.txt"

steps_args=(--out "$out/gpu_day_steps.json")
[ $smoke = 1 ] && steps_args+=(--smoke)
[ $smoke = 0 ] && [ "${COMPILE:-0}" = 1 ] && steps_args+=(--compile)
timeout "${STEPS_SECONDS:-150}" "$python" benchmarks/gpu_day.py "${steps_args[@]}"

# Batched seeds: R image nets stacked into one vmapped step against R separate steps.
if [ $smoke = 1 ]; then
    "$python" benchmarks/batched_seeds.py --out "$out" --seeds 2 --size 32 --kernel 5 --channels 8 --rounds 1
else
    for config in "8 96 9" "4 255 27"; do
        read -r seeds size kernel <<<"$config"
        timeout 120 "$python" benchmarks/batched_seeds.py --out "$out" --device cuda --seeds "$seeds" \
            --size "$size" --kernel "$kernel" --channels 128
    done
fi

bank_args=(run --root "$out/bank" --devices 1 --concurrent)
if [ $smoke = 1 ]; then
    bank_args+=(--methods improved --seeds 0 --jobs_per_device 1 --first_inputs 1
                --model.image_net.channels 8 --model.iterations 6 --model.scales.coarse_iterations 2)
else
    # No checkpoints: a lent machine is gone before a killed job could resume anyway.
    bank_args+=(--seeds "${BANK_SEEDS:-0-1}" --jobs_per_device "${JOBS_PER_GPU:-5}" --checkpoint.every_n_steps 0)
fi
start=$(date +%s)
timeout -s TERM -k 20 "${BANK_SECONDS:-420}" "$python" benchmarks/full_fidelity_bank.py "${bank_args[@]}"
echo "gpu_day: bank ran $(( $(date +%s) - start )) s"
[ $mps = 1 ] && echo quit | nvidia-cuda-mps-control
# Finished runs only (metrics.json is written last), without events and checkpoints.
finished=$(cd "$out" && find bank -name metrics.json -printf '%h\n' 2>/dev/null | sort)
if [ -n "$finished" ]; then
    (cd "$out" && echo "$finished" | tar czf bank.tgz --exclude='events.out.tfevents*' --exclude=checkpoints -T -)
    rm -rf "$out/bank"
fi
echo "gpu_day: $(echo -n "$finished" | grep -c . ) finished bank runs in $out/bank.tgz"
