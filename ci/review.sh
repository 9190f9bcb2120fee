#!/usr/bin/env bash
# The review of a pull request, for CI: restore this commit's outputs from the DVC remote (run
# the pipeline only for what the remote lacks), then write reports/review.md against BASE.
#
#   ci/review.sh [BASE]        BASE defaults to origin/main
#
# Called by .github/workflows/review.yml and docs/ci/gitlab-review.yml, which then post
# reports/review.md as a comment with CML. It needs `dvc` and `ncf` on PATH, the git history
# of BASE (a full clone, not a shallow one), and read access to the default DVC remote
# (docs/review.md). It posts nothing itself, so it runs the same on a laptop.
set -euo pipefail
BASE="${1:-origin/main}"
cd "$(git rev-parse --show-toplevel)"

git rev-parse --verify -q "$BASE^{commit}" >/dev/null || {
    echo "error: $BASE is not in this clone; fetch it (git fetch origin main, or a clone with full history)" >&2
    exit 2
}
# The run cache (so that `dvc repro` restores instead of training what anyone pushed) and this
# commit's outputs; a file the remote lacks is left for `dvc repro`.
dvc pull --run-cache --allow-missing
if ! dvc status --quiet; then
    echo "ci/review.sh: outputs missing or out of date, running dvc repro" >&2
    dvc repro
fi
# BASE's ranks are read from the local cache or, failing that, the remote: nothing to pull here.
ncf review "$BASE" --out reports/review.md
