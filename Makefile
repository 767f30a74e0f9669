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
	$(PIP) install --quiet -c constraints.txt -e ".[test]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q

# Three minutes of training on the bundled Beauty data, test metrics, then recommendations from the saved model.
# Without the recipe's refit, which would train as long again.
demo: setup
	$(PY) examples/train.py --dataset beauty --output_dir outputs/demo --max_train_time 180 --max_eval_users 5000 \
		--no-refit
	cp outputs/demo/README.md model_cards/demo-model-card.md
	$(PY) examples/recommend.py --model outputs/demo --top_k 5 --history 1 2 3 4 5 --history 43 3 44 --history 594

bench: setup
	$(PY) bench/train_step.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
