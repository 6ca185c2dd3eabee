#!/usr/bin/env bash
# Builds the JupyterLab / Notebook 7 extension from source into persistent_kernel/labextension,
# which the wheel ships as share/jupyter/labextensions/persistent-kernel (so `pip install .`
# needs no node). Needs node, the npm registry, and jupyterlab in the active Python
# (its staging/ names the versions of the packages JupyterLab shares with extensions).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
npx tsc
core=$(python -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')
rm -rf ../persistent_kernel/labextension
node node_modules/@jupyterlab/builder/lib/build-labextension.js --core-path "$core" .
cp install.json ../persistent_kernel/labextension/install.json
echo "built: $(cd .. && ls persistent_kernel/labextension/static | wc -l) files in persistent_kernel/labextension"
