# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: setup test demo bench clean

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# The pinned CPU wheel first, then everything else under the same constraint.
	$(PIP) install --quiet -c constraints.txt torch
	$(PIP) install --quiet -c constraints.txt -e ".[test,index,onnx,serve]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q

# 40 epochs (about two and a half minutes on 2 cores) on the bundled Beauty file's 10-core (items with 10+
# interactions, users with 5+ of them), with the recipe read from the data (the cloze and the causal candidate race on
# validation for 15% of the epochs each): test metrics beside popularity's, then recommendations for two histories
# from the saved model. A budget in epochs, not seconds: the same model on a slow or busy machine, only later. Writes
# only under outputs/.
demo: setup
	$(PY) examples/train.py --dataset data/beauty/beauty.txt --min_item_interactions 10 --min_user_interactions 5 \
		--max_length 50 --num_train_epochs 40 --output_dir outputs/demo
	$(PY) examples/recommend.py --model outputs/demo --top_k 5 --history 25 27 30 --history 14537 28590 8328

bench: setup
	$(PY) bench/train_step.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
