#!/usr/bin/env bash
# One short session on a lent GPU machine: the throughput benchmark, then recipe variants of ML-1M and Beauty run
# side by side on the one GPU (validation only, as in recipe_variants.py), so that a few minutes show how each
# recipe's validation NDCG@10 grows with epochs, far past what 2 CPU cores reach in an hour.
#
#     bash bench/gpu_session.sh DATA_DIR OUT_DIR [SECONDS_PER_VARIANT]
#
# DATA_DIR holds ml-1m/ml-1m.txt and beauty/beauty.txt. OUT_DIR receives the throughput line, each data set's
# report and a tarball of every variant's training_history.json and train.log.
set -u
data_dir=$(realpath "$1")
out_dir=$(realpath "$2")
seconds=${3:-420}
repo=$(dirname "$(realpath "$0")")/..
cd "$repo/bench"
export PYTHONUNBUFFERED=1 BERT4REC_SHARED_DATA="$data_dir"
variants=/tmp/bert4rec-variants

python3 gpu_throughput.py 2>&1 | tee "$out_dir/gpu_throughput.txt"

# Every variant also runs in fp32 like the CPU recipes, with patience out of the way, so its whole curve shows, and
# every user holding out a validation item, as when the README's GPU numbers were taken.
common="--mixed_precision no --early_stopping_patience 100000 --validation_users 0"
large="--hidden_size 256 --num_attention_heads 4 --intermediate_size 1024 --mask_probability 0.15 $common"
python3 recipe_variants.py --dataset ml-1m --data_dir "$data_dir" --output_root "$variants" \
    --max_train_time "$seconds" --max_eval_users 6040 --curve_every 20 \
    --variant "recipe=$common" \
    --variant "len100=--max_length 100 $common" \
    --variant "h128=--hidden_size 128 --intermediate_size 512 $common" \
    --variant "h256-len100-bs128=--max_length 100 --per_device_train_batch_size 128 $large" \
    > "$out_dir/ml-1m.txt" 2>&1 &
python3 recipe_variants.py --dataset beauty --data_dir "$data_dir" --output_root "$variants" \
    --max_train_time "$seconds" --max_eval_users 5000 --curve_every 10 \
    --variant "recipe=$common" \
    --variant "dropout0.5=--hidden_dropout_prob 0.5 $common" \
    --variant "h256-bs128=--per_device_train_batch_size 128 $large" \
    > "$out_dir/beauty.txt" 2>&1 &
wait
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv 2>/dev/null
(cd "$variants" && tar czf "$out_dir/variants.tgz" $(find . -name training_history.json -o -name train.log))
python3 recipe_variants.py --dataset ml-1m --output_root "$variants" --report_only --curve_every 20 \
    --variant "recipe=" --variant "len100=" --variant "h128=" --variant "h256-len100-bs128="
python3 recipe_variants.py --dataset beauty --output_root "$variants" --report_only --curve_every 10 \
    --variant "recipe=" --variant "dropout0.5=" --variant "h256-bs128="
