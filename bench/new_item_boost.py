"""What showing new items costs the old ones: an attribute model of `bench/cold_start.py` (trained on S3Rec Beauty
without its cold items), the cold items added with each `new_item_boost`, tested on every user.

    python bench/cold_start.py --work_dir W          # trains W/attributes among others
    python bench/new_item_boost.py --model W/attributes [--boosts 0 0.5 1 1.5 2 2.5 4 6]

For each boost: full-ranking NDCG@10 (history excluded, leave-one-out) on the test targets that are cold items, on
those that are not, and on all of them. Last line: the boost that ranks best over all targets, and the cold and warm
NDCG@10 there.
"""

import argparse

from transformers import AutoModelForMaskedLM, AutoTokenizer

import bert4rec_hf  # noqa: F401  (registers the model with the Auto classes)
from bert4rec_hf.data import load_item_attributes
from cold_start import cold_items, ndcg_hr10, read_log, test_split
from common import SHARED_DATA


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="cold_start.py's attribute model (WORK_DIR/attributes)")
    parser.add_argument("--boosts", type=float, nargs="+", default=[0, 0.5, 1, 1.5, 2, 2.5, 4, 6])
    parser.add_argument("--cold_share", type=float, default=0.1, help="as the model was trained with cold_start.py")
    parser.add_argument("--seed", type=int, default=0, help="as the model was trained with cold_start.py")
    args = parser.parse_args()

    log = read_log(SHARED_DATA / "s3rec" / "Beauty.txt")
    attributes = load_item_attributes(SHARED_DATA / "s3rec" / "Beauty_item2attributes.json")
    cold = cold_items(log, args.cold_share, args.seed)
    cold_users = [u for u in sorted(log) if log[u][-1] in cold]
    warm_users = [u for u in sorted(log) if log[u][-1] not in cold]
    splits = {"cold": test_split(log, cold_users), "warm": test_split(log, warm_users)}
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.add_items(sorted(cold), attributes={i: attributes.get(str(i), []) for i in sorted(cold)})
    results = {}
    for boost in args.boosts:
        model = AutoModelForMaskedLM.from_pretrained(args.model)
        model.set_item_attributes(tokenizer.item_attribute_ids(), new_item_boost=boost)
        ndcg = {name: ndcg_hr10(model, tokenizer, split)[0] for name, split in splits.items()}
        ndcg["all"] = (ndcg["cold"] * len(cold_users) + ndcg["warm"] * len(warm_users)) / len(log)
        results[boost] = ndcg
        print(f"new_item_boost {boost:g}: test NDCG@10 cold {ndcg['cold']:.4f}, warm {ndcg['warm']:.4f}, "
              f"all {ndcg['all']:.4f}", flush=True)
    best = max(results, key=lambda boost: results[boost]["all"])
    print(f"best_boost_all_targets={best:g} cold_ndcg10={results[best]['cold']:.4f} "
          f"warm_ndcg10={results[best]['warm']:.4f}")


if __name__ == "__main__":
    main()
