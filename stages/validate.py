"""validate: check every key of params.yaml, and how they combine, before any other stage runs.

DVC removes a stage's outputs before running its command, so a stage that refused its params
would already have lost the previous models, metrics and curves. This stage depends on the
whole params.yaml file, runs whenever any of it changes (a misspelt or misplaced key too, which
no other stage declares), and every other stage comes after it: a bad value stops `dvc repro`
and `dvc exp run` here, with one line and exit code 2, before anything is removed.
"""

import _bootstrap  # noqa: F401  (project Python and this checkout's src/)

from pathlib import Path

from ncf.config import check_complete, check_data, check_runnable, load_params
from ncf.errors import ParamsError
from ncf.io import write_bytes
from ncf.movielens import RELEASES
from ncf.stage import log, parser, run


def main():
    p = parser(__doc__)
    p.add_argument("--out", required=True, help="output: a marker that later stages depend on (always the same bytes)")
    args = p.parse_args()
    params = load_params(args.params)
    check_complete(args.params)
    release = RELEASES.get(params.data.dataset)
    known = params.data.verify and release is not None and release.sizes is not None  # not for test data
    check_runnable(params, num_items=release.sizes.items if known else None)
    check_data(params)
    data = params.data
    if data.dataset == "file":
        from ncf.interactions import file_format

        for path in filter(None, (data.file.interactions, data.file.items)):
            file_format(path, data.file.format)  # a name it cannot read is refused here, not after removal
    elif data.sources == ("local",) and not Path(data.local_zip).is_file():
        zip_path = Path(data.local_zip)
        what = "is empty" if not data.local_zip else ("is a folder" if zip_path.is_dir() else "does not exist")
        raise ParamsError(f"data.local_zip {what}, and data.sources is [local] only: give the path of the "
                          f"{data.dataset} zip, or add grouplens or pypi to data.sources")
    if params.device == "cuda" or params.train.backend == "nccl":  # only these need torch to check
        from ncf.distributed import backend_for
        from ncf.runtime import resolve_device

        backend_for(params.train.backend, resolve_device(params.device))
    # The same bytes whatever the params: stages downstream rerun for their own keys, not for this.
    write_bytes(b"params.yaml: every key is known and valid\n", args.out)
    log("validate", f"{args.params}: every key is known and valid")


if __name__ == "__main__":
    run(main)
