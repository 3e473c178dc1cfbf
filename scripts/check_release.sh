#!/usr/bin/env bash
# Release checks (run by .ci/run): build the sdist and the wheel, check their metadata and the
# sdist's contents, install the wheel with every extra into a fresh environment outside the
# source tree, and run the command line from there. Needs the "release" extra (build, twine).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
start=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT  # the fresh environment weighs about a gigabyte
python -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
python -m twine check --strict "$work"/dist/*
sdist=$(echo "$work"/dist/*.tar.gz) wheel=$(echo "$work"/dist/*.whl)
version=$(basename "$wheel" | cut -d- -f2)
echo "built $(basename "$sdist") and $(basename "$wheel") in $((SECONDS - start)) s"

# The sdist can be tested and documented on its own.
listing=$(tar -tzf "$sdist")
for f in tests/test_cli.py tests/conftest.py docs/index.md docs/img/teacher-student.png \
  mkdocs.yml CHANGELOG.md LICENSE scripts/install.sh recurrent_zoo/data/sample/NOTICE; do
  grep -qx "recurrent_zoo-$version/$f" <<<"$listing" || { echo "the sdist lacks $f"; exit 1; }
done

# pip takes the dependencies' wheels from its cache, filled by the first install; compiling
# every installed module to bytecode would take longer than the rest of the step.
python -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --no-compile "$wheel[all]"
echo "installed the wheel with [all] into a fresh environment: $((SECONDS - start)) s so far"
cd "$work"  # outside the source tree: only the installed package can be imported
installed=$(venv/bin/recurrent-zoo --version)
[ "$installed" = "recurrent-zoo $version" ] || { echo "wheel $version installs $installed"; exit 1; }
venv/bin/recurrent-zoo list >/dev/null
venv/bin/recurrent-zoo bench theory --out results --rhos 0 --lambdas 0.5 --batch 16 --grid 3 \
  --teachers 0.9 --parametrizations exp >/dev/null
for f in theory.json theory_sensitivity.png; do
  [ -s "results/$f" ] || { echo "bench theory wrote no $f"; exit 1; }
done
echo "release checks passed in $((SECONDS - start)) s"
