"""What to do with the items already in a history, measured on a trained run: leave them all out (the field's
protocol), keep them all, or something between, each chosen on validation and then tested.

    python bench/repeat_policies.py --model outputs/quality/yelp-read-from-the-data \
        --dataset ../shared/data/s3rec/Yelp.txt

The run's own validation and test users (its recipe's `validation_users`, `max_length` and seed), ranked as a served
top-k ranks them: an item left out cannot be hit, so a target left out is a miss. The policies:
- `left out` / `kept`: `exclude_seen_items` True / False, what the library serves today;
- `seen +b`: the history's items compete with b added to their scores (0 = kept, minus infinity = left out; above
  0, the model's scores for repeats are trusted more than it gives them);
- `last N left out`: only the items of the last N positions are left out (a user who just went there will not go
  straight back), the older ones compete.
Prints each policy's validation and test NDCG@10 and HR@10, then the one validation picks and what it scores on test.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from bert4rec_hf import Bert4RecForMaskedLM
from bert4rec_hf.evaluation import MISSED, ndcg_gains
from bert4rec_hf.training import load_user_sequences, prepare_training_data


# Added to the history's items' scores (logits): above 0 they are boosted, below lowered.
SEEN_OFFSETS = (8.0, 5.0, 3.0, 2.0, 1.0, 0.5, -0.5, -1.0, -2.0, -5.0)
LAST_N = (1, 2, 3, 5, 10)


def policy_ranks(model, tokenizer, split, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Each policy's 0-based rank of every user's target (MISSED where the policy leaves the target out)."""
    ranks: dict[str, list[torch.Tensor]] = {}
    lowest = torch.finfo(torch.float32).min
    for first in range(0, split.num_rows, batch_size):
        rows = split[first : first + batch_size]
        batch = tokenizer(rows["item_ids"], return_tensors="pt")
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        targets = torch.tensor(tokenizer.convert_items_to_ids(rows["target"]))
        with torch.no_grad():
            scores = model.next_item_scores(input_ids, attention_mask=mask, exclude_seen=False)
        items = (input_ids >= model.config.first_item_token_id) & mask.bool()
        # How far back each position is: 1 = the last item (the [MASK] is not an item).
        length = items.sum(1, keepdim=True)
        back = length - items.long().cumsum(1) + 1
        rows_index = torch.arange(len(targets))[:, None].expand_as(input_ids)

        def rank_with(excluded: torch.Tensor | None = None, offset: float = 0.0) -> torch.Tensor:
            adjusted = scores.clone()
            if offset:
                adjusted[rows_index[items], input_ids[items]] += offset
            if excluded is not None:
                adjusted[rows_index[excluded], input_ids[excluded]] = lowest
            rank = (adjusted > adjusted.gather(1, targets[:, None])).sum(1).double()
            if excluded is not None:
                rank[(excluded & (input_ids == targets[:, None])).any(1)] = MISSED
            return rank

        results = {"kept": rank_with(), "left out": rank_with(items)}
        results.update({f"seen {offset:+g}": rank_with(offset=offset) for offset in SEEN_OFFSETS})
        results.update({f"last {n} left out": rank_with(items & (back <= n)) for n in LAST_N})
        for name, rank in results.items():
            ranks.setdefault(name, []).append(rank)
    return {name: torch.cat(parts) for name, parts in ranks.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a run's output directory (examples/train.py)")
    parser.add_argument("--dataset", type=Path, required=True, help="the log the run trained on")
    parser.add_argument("--seed", type=int, default=42,
                        help="the run's --seed (it draws the validation users; train.py's default 42)")
    args = parser.parse_args()

    for name in ("recipe.json", "all_results.json"):
        if not (args.model / name).is_file():
            sys.exit(f"{args.model}: no {name}, so not a run's output directory (examples/train.py writes it)")
    if not args.dataset.is_file():
        sys.exit(f"{args.dataset}: no such file")
    recipe = json.loads((args.model / "recipe.json").read_text())["recipe"]
    if "refit_epochs" in json.loads((args.model / "all_results.json").read_text()):
        print("note: this model was refit with the validation items in training, so its validation scores flatter it "
              "(read the test column; the run chose its rule on the model before the refit)")
    sequences = load_user_sequences(args.dataset, None, print_line=lambda line: None)
    data = prepare_training_data(sequences, args.dataset, None, recipe["validation_users"], recipe["max_length"],
                                 args.seed)
    model = Bert4RecForMaskedLM.from_pretrained(args.model).eval()
    measured = {}
    for split in ("validation", "test"):
        for name, rank in policy_ranks(model, data.tokenizer, data.splits[split]).items():
            measured.setdefault(name, {})[split] = (ndcg_gains(rank, 10).mean().item(),
                                                    (rank < 10).double().mean().item())
    print(f"{'policy':<20} {'validation NDCG@10':>18} {'HR@10':>7} {'test NDCG@10':>13} {'HR@10':>7}")
    for name, by_split in measured.items():
        (v_ndcg, v_hr), (t_ndcg, t_hr) = by_split["validation"], by_split["test"]
        print(f"{name:<20} {v_ndcg:>18.4f} {v_hr:>7.4f} {t_ndcg:>13.4f} {t_hr:>7.4f}")
    picked = max(measured, key=lambda name: measured[name]["validation"][0])
    served = max(("left out", "kept"), key=lambda name: measured[name]["validation"][0])
    print(f"picked={picked!r} test_ndcg10={measured[picked]['test'][0]:.4f} "
          f"served_today={served!r} test_ndcg10={measured[served]['test'][0]:.4f}")


if __name__ == "__main__":
    main()
