#!/usr/bin/env bash
# GPU day: every GPU measurement in one prepared run, on a bare GPU machine whose Python
# has torch and Lightning (e.g. one H100/H200; about 9 minutes, each part under its own
# time limit, results written as each part ends).
#
#   benchmarks/gpu/gpu_day.sh            results under $OUT (or a new temporary folder)
#   benchmarks/gpu/gpu_day.sh --smoke    the same steps at tiny sizes, on any CPU (about a minute)
#
# 1. step figures (benchmarks/gpu/gpu_day.py): direct vs FFT blur; float32 vs bf16, contiguous
#    vs channels_last, cuDNN autotuner off vs on  ->  $OUT/gpu_day_steps.json; one Adam
#    update, default vs foreach vs fused (benchmarks/cpu_step/optimizer_speed.py)  ->  $OUT/optimizer_speed_*.json
# 2. only if JOB255_SECONDS is set (measured on an H200: 60 + 251 s; 320 repeats it):
#    whole jobs at 255×255 with a 27×27 kernel, fast.yaml and improved.yaml one after the
#    other (benchmarks/method_cost/method_speed.py; the image is $IMAGE255, by default
#    .gpu_data/im1_kernel4_img.png, Levin et al.'s im1 with kernel 4, copied there
#    beforehand from ../shared/data/levin and carried)  ->  $OUT/method_speed_*.json
# 3. jobs per minute with 1, 4 and 2 fast.yaml jobs at a time on the GPU (or the counts
#    in JOBS_PER_GPU_COUNTS, e.g. "4 2"; benchmarks/gpu/jobs_per_gpu.py, 96×96 bank input; an
#    improved.yaml job there takes minutes even alone)  ->  $OUT/jobs_per_gpu.json
# 4. only if COMPILE_SECONDS is set: torch.compile of the step, modes default (Inductor's
#    kernels) then reduce-overhead (the same with CUDA graphs)  ->  $OUT/gpu_day_compile.json
#    (on an H200 reduce-overhead alone had not finished compiling in 70 s)
# Time limits (seconds, each part's variable): steps 50 (STEPS_SECONDS), Adam 30
# (ADAM_SECONDS), jobs per GPU 100 (JOBS_PER_GPU_SECONDS): about 4 minutes with the
# start-up, so COMPILE_SECONDS, JOB255_SECONDS or BANK_SECONDS fit beside them.
# A part's variable set to 0 skips it (a later GPU day need not repeat what one measured).
# 5. only if BANK_SECONDS is set: the full-fidelity bank's jobs of BANK_METHODS (default
#    improved_restarts1, the one the CPU cannot afford), side by side, several jobs per GPU,
#    for that many seconds; finished runs' small files  ->  $OUT/bank.tgz
# Missing pure-Python dependencies travel as wheels in .whl/ (see benchmarks/gpu/README.md).
set -uo pipefail
cd "$(dirname "$0")/../.."

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
# (Printed, not saved: a lent machine sends back only a few files.)
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv

# MPS lets the concurrent jobs' small kernels share the GPU; without it they take turns.
mps=0
if [ $smoke = 0 ] && command -v nvidia-cuda-mps-control >/dev/null; then
    if nvidia-cuda-mps-control -d 2>/dev/null && "$python" -c "import torch; torch.ones(1).cuda()" 2>/dev/null; then
        mps=1
    else
        echo quit | nvidia-cuda-mps-control 2>/dev/null
    fi
fi
echo "gpu_day: MPS $mps"

# runs PART_SECONDS DEFAULT: true unless the part's time limit is set to 0 (GNU timeout
# would read 0 as no limit at all).
runs() { [ "${!1:-$2}" -gt 0 ]; }

steps_args=(--out "$out/gpu_day_steps.json")
[ $smoke = 1 ] && steps_args+=(--smoke)
runs STEPS_SECONDS 50 && timeout "${STEPS_SECONDS:-50}" "$python" benchmarks/gpu/gpu_day.py "${steps_args[@]}"
# Adam's implementations (default, foreach, fused) on the job's parameters: seconds.
if [ $smoke = 1 ]; then
    "$python" benchmarks/cpu_step/optimizer_speed.py --out "$out" --channels 8 --rounds 3
elif runs ADAM_SECONDS 30; then
    timeout "${ADAM_SECONDS:-30}" "$python" benchmarks/cpu_step/optimizer_speed.py --out "$out" --device cuda --channels 32 128
fi

# Whole jobs: the fast method first (short), then the paper's improved method.
if [ $smoke = 1 ]; then
    tiny=(--model.image_net.channels 8 --model.iterations 6 --model.scales.coarse_iterations 2)
    "$python" benchmarks/method_cost/method_speed.py --out "$out" --image lightning_deblur/examples/kodim05_blurred.png \
        --kernel_size 13 --configs "fast_tiny=fast ${tiny[*]}" "improved_tiny=improved ${tiny[*]}"
    "$python" benchmarks/gpu/jobs_per_gpu.py --out "$out/jobs_per_gpu.json" --counts 1 2 "${tiny[@]}"
else
    image255=${IMAGE255:-.gpu_data/im1_kernel4_img.png}
    if runs JOB255_SECONDS 0 && [ -f "$image255" ]; then
        timeout "$JOB255_SECONDS" "$python" benchmarks/method_cost/method_speed.py --out "$out" --image "$image255" \
            --kernel_size 27 --configs fast improved
    elif runs JOB255_SECONDS 0; then
        echo "gpu_day: no $image255, whole jobs at 255×255 skipped (copy a Levin image there)" >&2
    fi
    if runs JOBS_PER_GPU_SECONDS 100; then
        timeout "${JOBS_PER_GPU_SECONDS:-100}" "$python" benchmarks/gpu/jobs_per_gpu.py --out "$out/jobs_per_gpu.json" \
            --counts ${JOBS_PER_GPU_COUNTS:-1 4 2} --seconds "$(( ${JOBS_PER_GPU_SECONDS:-100} - 35 ))" --mps "$mps"
    fi
fi

if [ $smoke = 0 ]; then
    # Last: a compiler can take long; its limit keeps the rest safe.
    if runs COMPILE_SECONDS 0; then
        timeout "$COMPILE_SECONDS" "$python" benchmarks/gpu/gpu_day.py --parts compile \
            --compile_modes default reduce-overhead --out "$out/gpu_day_compile.json"
    fi
fi

bank_seconds=${BANK_SECONDS:-0}
[ $smoke = 1 ] && bank_seconds=120
if [ "$bank_seconds" -gt 0 ]; then
    bank_args=(run --root "$out/bank" --devices 1 --concurrent)
    if [ $smoke = 1 ]; then
        bank_args+=(--methods improved --seeds 0 --jobs_per_device 1 --first_inputs 1 "${tiny[@]}")
    else
        # No checkpoints: a lent machine is gone before a killed job could resume anyway.
        bank_args+=(--methods "${BANK_METHODS:-improved_restarts1}" --seeds "${BANK_SEEDS:-0-1}"
                    --jobs_per_device "${JOBS_PER_GPU:-5}" --checkpoint.every_n_steps 0)
    fi
    start=$(date +%s)
    timeout -s TERM -k 20 "$bank_seconds" "$python" benchmarks/bank/full_fidelity_bank.py "${bank_args[@]}"
    echo "gpu_day: bank ran $(( $(date +%s) - start )) s"
    # Finished runs only (metrics.json is written last; a job stopped at the time limit
    # writes one too, saying "stopped"), without events and checkpoints.
    finished=$(cd "$out" && find bank -name metrics.json -exec grep -l '"status": "done"' {} + 2>/dev/null \
               | xargs -r -n1 dirname | sort)
    if [ -n "$finished" ]; then
        (cd "$out" && echo "$finished" | tar czf bank.tgz --exclude='events.out.tfevents*' --exclude=checkpoints -T -)
        rm -rf "$out/bank"
    fi
    echo "gpu_day: $(echo -n "$finished" | grep -c . ) finished bank runs in $out/bank.tgz"
fi
[ $mps = 1 ] && echo quit | nvidia-cuda-mps-control
# Only small files come back from a lent machine: the jobs' run folders stay there.
rm -rf "$out"/jobs_per_gpu_runs
exit 0
