import os
from collections import defaultdict
from pathlib import Path

import pytest


# No test may reach the network: set before anything imports huggingface_hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parent.parent
BUNDLED_BEAUTY = REPO / "data" / "beauty" / "beauty.txt"
SHARED_DATA = Path(os.environ.get("BERT4REC_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data(relative: str) -> Path:
    """A file of ../shared/data, or skip: a user's clone has no ../shared (CI always has it)."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not found: this test needs the shared data sets next to the repository")
    return path


@pytest.fixture(scope="session")
def beauty_sequences() -> list[list[int]]:
    """The first 300 users of the bundled Amazon Beauty file (real data, in the repository)."""
    sequences: dict[int, list[int]] = defaultdict(list)
    with open(BUNDLED_BEAUTY) as handle:
        for line in handle:
            user, item = map(int, line.split())
            if user not in sequences and len(sequences) == 300:
                break
            sequences[user].append(item)
    return list(sequences.values())


@pytest.fixture(scope="session")
def beauty_tokenizer(beauty_sequences):
    from bert4rec_hf import Bert4RecTokenizer

    titles = {item: f"Beauty product {item}" for sequence in beauty_sequences for item in sequence}
    return Bert4RecTokenizer.from_sequences(beauty_sequences, titles=titles, model_max_length=50)


@pytest.fixture
def beauty_model(beauty_tokenizer):
    import torch

    from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM

    torch.manual_seed(0)
    config = Bert4RecConfig(num_items=beauty_tokenizer.num_items, max_position_embeddings=50)
    return Bert4RecForMaskedLM(config).eval()


@pytest.fixture(scope="session")
def trained_beauty_model(beauty_sequences, beauty_tokenizer):
    """A small model trained for a few hundred steps on the 300 Beauty users, so scores carry real signal."""
    import torch

    from bert4rec_hf import Bert4RecConfig, Bert4RecForMaskedLM
    from bert4rec_hf.data import DataCollatorForMaskedItemModeling

    torch.manual_seed(0)
    config = Bert4RecConfig(num_items=beauty_tokenizer.num_items, max_position_embeddings=50)
    model = Bert4RecForMaskedLM(config)
    collator = DataCollatorForMaskedItemModeling(max_length=50, mask_probability=0.6, mask_last_probability=0.2,
                                                 generator=torch.Generator().manual_seed(0))
    examples = [{"input_ids": beauty_tokenizer.convert_items_to_ids(s)} for s in beauty_sequences]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(60):
        batch = collator([examples[(step * 64 + i) % len(examples)] for i in range(64)])
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture
def cache_dir(tmp_path):
    """A fresh conversion cache for each test."""
    return tmp_path / "cache"


@pytest.fixture
def seed_shards(tmp_path):
    """A writable copy of the seed-format MovieLens-100K shards (written by TensorFlow) and their ground truth."""
    import shutil

    source = shared_data("seed-tfrecords/ml-100k")
    copy = tmp_path / "seed-ml-100k"
    shutil.copytree(source, copy)
    for path in copy.iterdir():
        path.chmod(0o644)
    return copy
