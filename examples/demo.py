"""The `make demo` job: train a small BERT4Rec on the bundled Amazon Beauty data on CPU, evaluate it, save it with
its tokenizer and model card, and print recommendations from the saved model.

    python examples/demo.py --output_dir outputs/demo [--max_train_time 180]

Protocol: leave-one-out. The model trains on every user's items but the last; the last item is the test target,
ranked against the whole catalogue with the user's other items excluded (full ranking).
"""

import argparse
import json
import random
import time
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM, Bert4RecTokenizer
from bert4rec_hf.data import DataCollatorForMaskedItemModeling, leave_one_out, load_sequences
from bert4rec_hf.evaluation import full_ranking_ranks, metrics_from_ranks
from bert4rec_hf.hub import render_model_card


REPO = Path(__file__).resolve().parent.parent


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data/beauty/beauty.txt",
                        help="a `user item` file, chronological per user")
    parser.add_argument("--output_dir", type=Path, default=REPO / "outputs/demo")
    parser.add_argument("--max_train_time", type=float, default=240.0, help="seconds of training")
    parser.add_argument("--per_device_train_batch_size", type=int, default=256)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--max_length", type=int, default=50)
    parser.add_argument("--mask_probability", type=float, default=0.6, help="the paper's 0.6 for Beauty")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args()


def train(model, tokenizer, histories, args):
    """Cloze training on the histories until the time budget is spent; returns (steps, epochs, seconds)."""
    collator = DataCollatorForMaskedItemModeling(
        max_length=args.max_length, mask_probability=args.mask_probability, mask_last_probability=0.1,
        generator=torch.Generator().manual_seed(args.seed),
    )
    examples = [{"input_ids": tokenizer.convert_items_to_ids(history)} for history in histories if history]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)
    shuffler = random.Random(args.seed)
    model.train()
    start, steps, epochs = time.monotonic(), 0, 0
    while time.monotonic() - start < args.max_train_time:
        shuffler.shuffle(examples)
        batch_size = args.per_device_train_batch_size
        for first in range(0, len(examples), batch_size):
            loss = model(**collator(examples[first : first + batch_size])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
            if steps % 50 == 0:
                print(f"  step {steps}  epoch {epochs + 1}  loss {loss.item():.3f}  "
                      f"{time.monotonic() - start:.0f}s", flush=True)
            if time.monotonic() - start >= args.max_train_time:
                break
        else:
            epochs += 1
    return steps, epochs, time.monotonic() - start


@torch.no_grad()
def evaluate_test(model, tokenizer, histories, targets, batch_size=1024):
    """Full-ranking leave-one-out metrics on the test targets (the same scores as `recommend`)."""
    model.eval()
    ranks = []
    for first in range(0, len(histories), batch_size):
        batch = tokenizer(histories[first : first + batch_size], return_tensors="pt")
        target_ids = torch.tensor(tokenizer.convert_items_to_ids(targets[first : first + batch_size]))
        ranks.append(full_ranking_ranks(model, batch["input_ids"], batch["attention_mask"], target_ids))
    return metrics_from_ranks(torch.cat(ranks), prefix="test_full_")


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    sequences = load_sequences(args.data, format="txt")  # converted once, then memory-mapped from the cache
    all_items = [item for items in sequences["item_ids"] for item in items]
    stats = {"users": sequences.num_rows, "items": len(set(all_items)), "interactions": len(all_items)}
    print(f"{args.data.name}: {stats['users']:,} users, {stats['items']:,} items, "
          f"{stats['interactions']:,} interactions")

    # Leave-one-out: the last item of each user is held out for test and never trained on. As in the paper, the
    # validation item is trained on (no early stopping here).
    test = leave_one_out(sequences)["test"]
    train_histories, test_targets = test["item_ids"], test["target"]
    tokenizer = Bert4RecTokenizer.from_sequences(sequences["item_ids"], model_max_length=args.max_length)
    config = Bert4RecConfig(num_items=tokenizer.num_items, max_position_embeddings=args.max_length,
                            hidden_dropout_prob=0.5)
    model = Bert4RecForMaskedLM(config)
    print(f"training for {args.max_train_time:.0f}s on {torch.get_num_threads()} threads "
          f"({sum(p.numel() for p in model.parameters()):,} parameters)")
    steps, epochs, seconds = train(model, tokenizer, train_histories, args)

    metrics = evaluate_test(model, tokenizer, train_histories, test_targets)
    print(f"trained {steps} steps ({epochs} full epochs) in {seconds:.0f}s")
    print("test, full ranking: " + "  ".join(f"{k.removeprefix('test_full_')}={v:.4f}"
                                             for k, v in metrics.items() if k != "test_full_users"))

    args.output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    results = {**metrics, "train_runtime_s": round(seconds, 1), "train_steps": steps, "epochs": epochs}
    (args.output_dir / "all_results.json").write_text(json.dumps(results, indent=2) + "\n")
    hyperparameters = {"max_length": args.max_length, "mask_probability": args.mask_probability,
                       "batch_size": args.per_device_train_batch_size, "learning_rate": args.learning_rate,
                       "train_steps": steps, "train_time_s": round(seconds), "hidden_size": config.hidden_size,
                       "layers": config.num_hidden_layers, "heads": config.num_attention_heads}
    card = render_model_card(
        model_name="bert4rec-beauty-demo", repo_id=str(args.output_dir), dataset_name="Amazon Beauty (BERT4Rec)",
        dataset_stats=stats, metrics={k: v for k, v in metrics.items() if k != "test_full_users"},
        hyperparameters=hyperparameters, example_history=train_histories[0][-3:], max_length=args.max_length,
    )
    card.save(args.output_dir / "README.md")
    print(f"saved model, tokenizer, model card and results to {args.output_dir}")

    # Recommendations from the saved directory, through the Auto classes, as a user would load them.
    loaded = AutoModelForMaskedLM.from_pretrained(args.output_dir).eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained(args.output_dir)
    histories = sequences.select(range(3))  # whole histories: recommend what comes after everything seen
    batch = loaded_tokenizer(histories["item_ids"], return_tensors="pt")
    top = loaded.recommend(**batch, top_k=5)
    for user, history, token_ids, scores in zip(histories["user_id"], histories["item_ids"], top.token_ids,
                                                top.scores):
        print(f"user {user}: history {history[-5:]} -> recommended {loaded_tokenizer.decode(token_ids)} "
              f"(scores {', '.join(f'{s:.2f}' for s in scores.tolist())})")


if __name__ == "__main__":
    main()
