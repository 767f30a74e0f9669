"""Evaluate a trained model on a data set's leave-one-out test split, on one process or many.

    python examples/evaluate.py --model outputs/ml-1m --dataset ../shared/data/ml-1m/ml-1m.txt --format txt
    torchrun --nproc_per_node 2 examples/evaluate.py --model ... --dataset ... --format ... --output metrics.json

Prints (and with --output writes) the test metrics under the full, pop100 and uni100 protocols. Every user is
scored exactly once whatever the number of processes; sampled negatives depend only on the seed and the user.
pop100 draws by popularity in the training split: pass the `--validation_users` and `--seed` the model was trained
with (its model card lists them) to draw the same negatives as `examples/train.py` did.
"""

import json
import os
import sys
from pathlib import Path

import torch

from accelerate import Accelerator
from transformers import AutoModelForMaskedLM, AutoTokenizer

import bert4rec_hf  # noqa: F401  (registers the bert4rec model type)
from bert4rec_hf.cli import OneLineArgumentParser, exit_on_bad_input
from bert4rec_hf.data import leave_one_out, load_sequences
from bert4rec_hf.data import item_popularity
from bert4rec_hf.evaluation import PROTOCOLS, evaluate_next_item
from bert4rec_hf.saved_model import resolve_model


def main():
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a saved model directory or Hub repo id")
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--format", default=None, help="the data set's format; guessed from its name by default")
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    parser.add_argument("--per_device_eval_batch_size", type=int, default=256)
    parser.add_argument("--validation_users", type=int, default=0,
                        help="as in examples/train.py: users holding out a validation item (0: every user)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    # Under torchrun without GPUs, accelerate forms a gloo process group only when told it runs on CPU.
    accelerator = Accelerator(cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1)
    with accelerator.main_process_first():
        splits = leave_one_out(load_sequences(args.dataset, format=args.format, show_progress=False),
                               validation_users=args.validation_users, seed=args.seed)
    model_name = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_name)
    model = AutoModelForMaskedLM.from_pretrained(model_name).to(accelerator.device)
    popularity = item_popularity([tokenizer.convert_items_to_ids(s) for s in splits["train"]["item_ids"]],
                                 tokenizer.vocab_size)
    metrics = evaluate_next_item(model, tokenizer, splits["test"], popularity=popularity, protocols=args.protocols,
                                 batch_size=args.per_device_eval_batch_size, accelerator=accelerator,
                                 seed=args.seed, prefix="test_")
    accelerator.print(f"evaluated {metrics['test_users']} users on {accelerator.num_processes} process(es)")
    if accelerator.is_main_process:
        text = json.dumps(metrics, indent=2)
        print(text)
        if args.output is not None:
            args.output.write_text(text + "\n")
    # Leave together and take the process group down: a gloo rank exiting with it alive can abort at shutdown.
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    sys.exit(exit_on_bad_input("evaluate.py", main))
