"""Run in a fresh process by test_hub.py, after HF_ENDPOINT, HF_TOKEN and HF_HOME are set: pull a model by repo id
and print what a user would get, as one JSON line."""

import json
import sys


def main():
    action, repo_id = sys.argv[1], sys.argv[2]
    revision = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
    histories = json.loads(sys.argv[4]) if len(sys.argv) > 4 else []
    if action == "tag":
        from huggingface_hub import HfApi

        HfApi().create_tag(repo_id, tag=histories, revision=revision)
        print(json.dumps({"tagged": histories}))
        return
    if action == "pull-handler":
        print(json.dumps(endpoint_answers(repo_id, revision, histories)))
        return
    from huggingface_hub import ModelCard, hf_hub_download
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    trust = action == "pull-remote-code"
    if not trust:
        import bert4rec_hf  # noqa: F401
    model = AutoModelForMaskedLM.from_pretrained(repo_id, revision=revision, trust_remote_code=trust).eval()
    tokenizer = AutoTokenizer.from_pretrained(repo_id, revision=revision, trust_remote_code=trust)
    batch = tokenizer(histories, return_tensors="pt")
    top = model.recommend(**batch, top_k=10)
    output = {"items": [tokenizer.decode(row) for row in top.token_ids], "scores": top.scores.tolist()}
    if not trust:
        recommend = pipeline("next-item-recommendation", model=repo_id, revision=revision)
        output["pipeline"] = recommend(histories, top_k=10)
        card = ModelCard.load(hf_hub_download(repo_id, "README.md", revision=revision))
        output["card_metrics"] = {r.metric_type: r.metric_value for r in card.data.eval_results or []}
    print(json.dumps(output))


def endpoint_answers(repo_id, revision, histories):
    """What an Inference Endpoint of the repo answers: its files downloaded, its handler.py imported by path and
    called as the service calls it. Nothing of bert4rec_hf is imported here."""
    import importlib.util
    import os

    from huggingface_hub import snapshot_download

    path = snapshot_download(repo_id, revision=revision)
    spec = importlib.util.spec_from_file_location("handler", os.path.join(path, "handler.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = module.EndpointHandler(path)
    answers = handler({"inputs": histories, "parameters": {"top_k": 10}})
    return {"items": [[r["item_id"] for r in row] for row in answers],
            "bert4rec_hf_imported": "bert4rec_hf" in sys.modules}


if __name__ == "__main__":
    main()
