# Thin aliases; the scripts under ci/ are the source of truth (CI runs ./ci/test).
.PHONY: demo test provision lint format typecheck unit bench

VENV = $(shell python3 -c 'import json,os; p=os.path.join(os.environ.get("OWL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),"openwebui-langfuse"),"world.json"); print(json.load(open(p))["venv"]["project"])' 2>/dev/null)

demo:        ; ./ci/demo
test:        ; ./ci/test
provision:   ; python3 ci/provision.py
lint:        ; $(VENV)/bin/ruff check operator tests bench demo && $(VENV)/bin/ruff format --check operator tests bench demo
format:      ; $(VENV)/bin/ruff format operator tests bench demo && $(VENV)/bin/ruff check --fix operator tests bench demo
typecheck:   ; $(VENV)/bin/mypy
unit:        ; $(VENV)/bin/python -m pytest tests/unit -q
bench:       ; $(VENV)/bin/python -m bench.operator_latency --count 20 --idle-periods 10 && $(VENV)/bin/python bench/filter_overhead.py --write
