"""Next-item ranking metrics (HR@k, NDCG@k, MRR) as an `evaluate` module.

    import evaluate
    from bert4rec_hf.evaluation import NEXT_ITEM_RANKING_METRIC
    metric = evaluate.load(NEXT_ITEM_RANKING_METRIC)
    metric.compute(predictions=[[0.1, 0.9, 0.3]], references=[1])   # scores of candidates, index of the target
    metric = evaluate.load(NEXT_ITEM_RANKING_METRIC, "ranks")
    metric.compute(predictions=[0, 3, 29])                            # 0-based rank of each target

The rank of a target is the number of candidates scored strictly higher, as in `bert4rec_hf.evaluation`.
"""

import datasets
import evaluate
import numpy as np


_CITATION = """\
@inproceedings{sun2019bert4rec,
  title={BERT4Rec: Sequential Recommendation with Bidirectional Encoder Representations from Transformer},
  author={Sun, Fei and Liu, Jun and Wu, Jian and Pei, Changhua and Lin, Xiao and Ou, Wenwu and Jiang, Peng},
  booktitle={CIKM}, year={2019}
}
"""

_DESCRIPTION = "Hit rate at 1/5/10/20, NDCG at 5/10/20 and MRR of one held-out target per user."

_KWARGS_DESCRIPTION = """
Args (default configuration):
    predictions: for each user, the scores of the candidate items.
    references: for each user, the index of the target among its candidates.
Args ("ranks" configuration):
    predictions: for each user, the 0-based rank of its target (infinity: a target that cannot be recommended, as
        one already in the history when the history is excluded).
Returns: a dict with hr@1, hr@5, hr@10, hr@20, ndcg@5, ndcg@10, ndcg@20, mrr and users.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class NextItemRanking(evaluate.Metric):
    def _info(self):
        if self.config_name == "ranks":
            features = datasets.Features({"predictions": datasets.Value("float64")})
        else:
            features = datasets.Features({"predictions": datasets.Sequence(datasets.Value("float32")),
                                          "references": datasets.Value("int64")})
        return evaluate.MetricInfo(description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
                                   features=features)

    def _compute(self, predictions, references=None):
        if self.config_name == "ranks":
            ranks = np.asarray(predictions, dtype=np.float64)
        else:
            ranks = np.array([(np.asarray(scores) > scores[target]).sum()
                              for scores, target in zip(predictions, references)], dtype=np.float64)
        result = {f"hr@{k}": float((ranks < k).mean()) for k in (1, 5, 10, 20)}
        for k in (5, 10, 20):
            result[f"ndcg@{k}"] = float(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
        result["mrr"] = float((1.0 / (ranks + 1.0)).mean())
        result["users"] = int(len(ranks))
        return result
