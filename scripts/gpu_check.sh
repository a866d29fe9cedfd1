#!/usr/bin/env bash
# GPU check of the rollout-engine and LoRA paths (issue 12). Run it on a machine with one CUDA GPU
# after `pip install -e ".[vllm]"` (the official vllm package and its CUDA torch):
#
#   bash scripts/gpu_check.sh                       # tiny:qwen2:20m, 3 steps per run (~minutes)
#   MODEL=gemma3-270m STEPS=5 bash scripts/gpu_check.sh
#
# Runs, each in bf16 autocast with sampling.engine=vllm (vLLM colocated, bf16 weights):
#   1. GRPO          2. ExP-GRPO          3. GRPO with LoRA r=8
#   4. GRPO under FSDP (accelerate, 1 process: exercises summon_full_params + full weight sync)
# and prints per run: median step time, rollout tokens/s, sampler/trainer mismatch and the peak
# GPU memory (torch.cuda.max_memory_allocated of the process, trainer + vLLM). Not run in CI
# (no GPU there); see README "What has run where".
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-tiny:qwen2:20m}
STEPS=${STEPS:-3}
NEW_TOKENS=${NEW_TOKENS:-128}
OUT=${OUT:-runs/gpu_check}
export VLLM_ENABLE_V1_MULTIPROCESSING=0 HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
python -c "import torch, vllm; assert torch.cuda.is_available(), 'no CUDA GPU'; print('torch', torch.__version__, 'vllm', vllm.__version__, torch.cuda.get_device_name())"

COMMON=(--set "model.policy=$MODEL" --set "train.steps=$STEPS" --set train.mixed_precision=bf16
        --set sampling.engine=vllm --set sampling.vllm_dtype=bfloat16 --set "sampling.max_new_tokens=$NEW_TOKENS"
        --set sampling.tis_cap=2.0 --set train.progress=false --set train.tensorboard=false)
rm -rf "$OUT"
python -m expo_rl.cli train grpo "${COMMON[@]}" --set "train.output_dir=$OUT/grpo"
python -m expo_rl.cli train exp_grpo "${COMMON[@]}" --set "train.output_dir=$OUT/exp_grpo"
python -m expo_rl.cli train grpo "${COMMON[@]}" --set model.lora.r=8 --set optim.lr=1e-4 --set "train.output_dir=$OUT/grpo_lora"
python -m expo_rl.cli merge "$OUT/grpo_lora" --out "$OUT/grpo_lora_merged"
accelerate launch --config_file expo_rl/presets/accelerate/fsdp.yaml --num_processes 1 \
  -m expo_rl.cli train grpo "${COMMON[@]}" --set "train.output_dir=$OUT/grpo_fsdp"

python - "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path
root = Path(sys.argv[1])
print(f"{'run':<12} {'step_s':>8} {'rollout tok/s':>14} {'|dlogp|':>9} {'kl':>9} {'peak GiB':>9}")
for name in ("grpo", "exp_grpo", "grpo_lora", "grpo_fsdp"):
    rows = [json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines() if line.strip()]
    later = rows[1:] or rows  # step 1 includes compilation/warm-up
    med = lambda key: statistics.median(r.get(key, float("nan")) for r in later)
    print(f"{name:<12} {med('time/step_s'):>8.2f} {med('rollout/tokens_per_s'):>14.0f} "
          f"{med('sampler/logprob_abs_diff'):>9.4f} {med('sampler/kl'):>9.5f} "
          f"{max(r.get('memory/peak_gib', float('nan')) for r in rows):>9.2f}")
PY
