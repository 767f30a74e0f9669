"""Which epochs to average: validation NDCG@10 of the mean weights of a run's epochs, from each first epoch given.

    python examples/train.py --dataset beauty --data_dir DATA --output_dir RUN --checkpointing_steps epoch \
        --average_weights_from 1 --no_evaluate_test --no_refit
    python bench/weight_averaging.py --run RUN --data DATA/beauty/beauty.txt --first_epochs 1 6 11 16 21 31

For each first epoch F, the weights saved at the end of epochs F to the run's last (its `checkpoints/epoch_N`) are
averaged, as `--average_weights_from` averages them during training, and the mean is scored under full ranking
on the validation users (the split is re-drawn from `--validation_users` and `--seed`, as examples/train.py drew
it; the defaults are the Beauty recipe's). Test is never scored: this chooses a recipe. The run's own epochs are
printed beside, from its `training_history.json`.
"""

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from common import REPO

from bert4rec_hf import Bert4RecForMaskedLM, Bert4RecTokenizer
from bert4rec_hf.data import leave_one_out, load_sequences
from bert4rec_hf.evaluation import evaluate_next_item


def mean_weights(checkpoints: list[Path]) -> dict[str, torch.Tensor]:
    total = None
    for checkpoint in checkpoints:
        weights = load_file(checkpoint / "model.safetensors")
        total = {k: v.double() for k, v in weights.items()} if total is None else \
            {k: total[k] + v.double() for k, v in weights.items()}
    return {k: (v / len(checkpoints)).float() for k, v in total.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="an output directory of examples/train.py that "
                        "saved a checkpoint every epoch (--checkpointing_steps epoch)")
    parser.add_argument("--data", type=Path, default=REPO / "data/beauty/beauty.txt")
    parser.add_argument("--format", default="txt")
    parser.add_argument("--validation_users", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--first_epochs", type=int, nargs="+", required=True)
    args = parser.parse_args()
    validation = leave_one_out(load_sequences(args.data, format=args.format, show_progress=False),
                               validation_users=args.validation_users, seed=args.seed)["validation"]
    tokenizer = Bert4RecTokenizer.from_pretrained(args.run)
    model = Bert4RecForMaskedLM.from_pretrained(args.run).eval()
    last_epoch = max(int(path.name.split("_")[1]) for path in (args.run / "checkpoints").glob("epoch_*"))

    history = json.loads((args.run / "training_history.json").read_text())
    best = max(history, key=lambda h: h["validation_full_ndcg@10"])
    print(f"the run's own epochs: best validation NDCG@10 {best['validation_full_ndcg@10']:.4f} at epoch "
          f"{best['epoch']}, {history[-1]['validation_full_ndcg@10']:.4f} at the last ({history[-1]['epoch']})")
    for first in args.first_epochs:
        checkpoints = [args.run / "checkpoints" / f"epoch_{epoch}" for epoch in range(first, last_epoch + 1)]
        model.load_state_dict(mean_weights(checkpoints))
        metrics = evaluate_next_item(model, tokenizer, validation, protocols=("full",), seed=args.seed)
        print(f"mean of epochs {first} to {last_epoch}: validation NDCG@10 {metrics['full_ndcg@10']:.4f} "
              f"HR@10 {metrics['full_hr@10']:.4f}", flush=True)


if __name__ == "__main__":
    main()
