#!/usr/bin/env bash
# Issue 9's GPU figures in one prepared run, for a lent GPU machine (the `device` tool of this
# workplace: an H200 image with Python 3.12, PyTorch, timm, scikit-image, OpenCV and pandas, but
# without segmentation-models-pytorch, albumentations or MONAI, and without ../shared).
#
#   here, once:  bash scripts/gpu_check.sh --fetch
#                (the missing wheels, at requirements.lock's versions, into .whl/, and both CTC
#                sets into .gpudata/data/ctc/ as in ../shared; both git-ignored, about 50 MB)
#   there:       bash scripts/gpu_check.sh      (device run: carry [".whl", ".gpudata"])
#
# Prints the device and versions; then, as GPU_CHECK_PARTS says (default "train predict
# network"): a short training of a resnet34 U-Net on the HeLa frames on the GPU, whose epoch lines
# give the share of time spent waiting for data; end-to-end `predict` with that model in images/s
# at 1024x1024 on real frames (benchmarks/postprocess_speed.py: one core's CPU work per image;
# benchmarks/handoff_speed.py: what passing arrays between processes costs; predict_speed.py:
# each part of one image, the network step alone eagerly, replayed and replayed 8 fields at a
# time, then the folder through segment_folder, 8 fields per network step and 1); the network alone
# (benchmarks/network_speed.py: eager fp32 one image at a time, eager bf16 channels-last
# batches of 32, folded eager and + torch.compile).
# Everything goes to stdout and, when $OUT is set, to $OUT/gpu_check.log. Measured on an H200
# on 2026-12-04 (docs/experiments.md): about 4.5 minutes with all three parts at 200 fields (a
# little more at today's 600), plus a minute or two for the machine's start.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WHEELS=(segmentation-models-pytorch monai albumentations albucore pydantic pydantic-core
    annotated-types typing-inspection stringzilla simsimd)
SHARED="${CELLSEG_SHARED:-../shared}/data/ctc"

if [ "${1:-}" = "--fetch" ]; then
    rm -rf .whl .gpudata && mkdir -p .whl .gpudata
    pip=(python3 -m pip)  # the project's venv (made by uv) may lack pip: the system's then
    "${pip[@]}" --version >/dev/null 2>&1 || pip=(/usr/bin/python3 -m pip)
    for name in "${WHEELS[@]}"; do
        version="$(grep -i "^${name}==" requirements.lock | cut -d= -f3)"
        [ -n "$version" ] || { echo "$name is not in requirements.lock" >&2; exit 1; }
        "${pip[@]}" download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "${name}==${version}"
    done
    [ -d "$SHARED" ] || { echo "$SHARED not found: set CELLSEG_SHARED" >&2; exit 1; }
    mkdir -p .gpudata/data && cp -r "$SHARED" .gpudata/data/
    # the device has no Great Expectations: validate the training frames here
    source scripts/env.sh && work="$(mktemp -d)"
    run=(--config configs/ctc_hela.yaml --source .gpudata/data/ctc/Fluo-N2DL-HeLa --run-id gpu
        --tracking none --set "paths.runs_dir=$work/runs" --set "paths.data_dir=$work/data")
    cellseg ingest "${run[@]}" >/dev/null
    cellseg validate "${run[@]}" | grep '"passed": true'
    rm -rf "$work"
    du -sh .whl .gpudata
    exit 0
fi

[ -d .whl ] && [ -d .gpudata ] || { echo "run 'bash scripts/gpu_check.sh --fetch' here first" >&2; exit 1; }
# GPU_CHECK_INSTALL=0: the packages are there already (a dry run on this machine, on its CPU:
# GPU_CHECK_DEVICE=cpu GPU_CHECK_EPOCHS=1 GPU_CHECK_STEPS=2 GPU_CHECK_FIELDS=4 ...)
if [ "${GPU_CHECK_INSTALL:-1}" != 0 ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
LOG="${OUT:-/tmp}/gpu_check.log"
work="${GPU_CHECK_WORK:-$(mktemp -d)}"  # the trained model: $work/runs/gpu/train/model
HELA=.gpudata/data/ctc/Fluo-N2DL-HeLa GOWT1=.gpudata/data/ctc/Fluo-N2DH-GOWT1
PARTS="${GPU_CHECK_PARTS:-train predict network}"  # predict needs train's model
part() { [[ " $PARTS " == *" $1 "* ]]; }
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    python3 -c "import torch, segmentation_models_pytorch as smp, monai, os
print('python', __import__('sys').version.split()[0], 'torch', torch.__version__, 'cuda',
      torch.version.cuda, 'smp', smp.__version__, 'monai', monai.__version__, 'cpus', os.cpu_count())"
    if part train; then
        echo "== training on the GPU (data-wait share per epoch): resnet34 U-Net, HeLa frames"
        # Great Expectations is not on the device: --fetch ran `cellseg validate` on these frames
        python3 - "$work" "${GPU_CHECK_DEVICE:-cuda}" "${GPU_CHECK_EPOCHS:-4}" \
            "${GPU_CHECK_STEPS:-200}" <<'PY'
import logging
import sys

from pipeline.stages import run_stage

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
work, device, epochs, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
params = {
    "config_file": "configs/ctc_hela.yaml",
    "source": ".gpudata/data/ctc/Fluo-N2DL-HeLa",
    "tracking": "none",
    "overrides": {
        "paths.runs_dir": f"{work}/runs", "paths.data_dir": f"{work}/data",
        "train.device": device, "train.epochs": epochs, "train.steps_per_epoch": steps,
        "train.batch_size": 16, "train.workers": 8, "train.encoder": "resnet34",
        "postprocess.tune_seed_threshold": False,
    },
}
ingest = run_stage("ingest", params, "gpu")
prep = run_stage("preprocess", params, "gpu", {"ingest": ingest, "validate": {"passed": True}})
out = run_stage("train", params, "gpu", {"preprocess": prep})
print({k: out[k] for k in ("device", "seconds", "data_wait", "best_epoch", "epochs_run")})
PY
    fi
    if part predict; then
        model="$work/runs/gpu/train/model"
        frame=(--model "$model" --size 1024 1024 --image "$HELA/01/t004.tif")
        echo "== one core's post-processing of a 1024x1024 field, and the processes' handoff"
        CELLSEG_SHARED=.gpudata python3 benchmarks/postprocess_speed.py --repeat 5 --profile
        python3 benchmarks/handoff_speed.py --images 20
        echo "== end to end predict: that model on a real HeLa frame mirrored to 1024x1024"
        python3 benchmarks/predict_speed.py "${frame[@]}" --fields "${GPU_CHECK_FIELDS:-600}" \
            --serial 10 --flip-tta off
        echo "== the same one field per network step (the default before predict.images_per_step)"
        python3 benchmarks/predict_speed.py "${frame[@]}" --fields "${GPU_CHECK_FIELDS:-600}" \
            --serial 1 --flip-tta off --images-per-step 1
        echo "== the same with 22 post-processing workers (more than cores: do they wait on files?)"
        python3 benchmarks/predict_speed.py "${frame[@]}" --fields "${GPU_CHECK_FIELDS:-600}" \
            --serial 1 --flip-tta off --workers 22
        echo "== the same with flip TTA (four network passes)"
        python3 benchmarks/predict_speed.py "${frame[@]}" --fields $(("${GPU_CHECK_FIELDS:-600}" / 2)) \
            --serial 5 --flip-tta on
        echo "== a GOWT1 frame (nuclei 2-3x larger than the model's: shrunk for the network)"
        python3 benchmarks/predict_speed.py --model "$model" --size 1024 1024 --flip-tta off \
            --image "$GOWT1/02/t000.tif" --fields "${GPU_CHECK_FIELDS:-600}" --serial 10
    fi
    if part network; then
        echo "== network alone (compiling: at most ${GPU_CHECK_COMPILE_S:-240} s)"
        # GPU_CHECK_COMPILE="default max-autotune": max-autotune outran 200 s on an H200
        timeout "${GPU_CHECK_COMPILE_S:-240}" python3 benchmarks/network_speed.py \
            --encoder resnet34 --size 1024 --batch 32 --compile-mode ${GPU_CHECK_COMPILE:-default} \
            || true
    fi
} 2>&1 | tee "$LOG"
