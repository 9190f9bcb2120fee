"""protocol.train_and_save in-process: select on training data, refit on training + validation, write."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from ncf import protocol
from ncf.config import parse_params
from ncf.models import GMF, load_checkpoint
from ncf.protocol import TrainingOutputs, read_split, train_and_save

USERS, ITEMS, LIKED = 90, 30, 8  # 6 training items, one validation and one test item per user


@pytest.fixture
def split(tmp_path, clustered_split):
    folder = tmp_path / "split"
    clustered_split(folder, users=USERS, items=ITEMS, liked=LIKED)
    return read_split(folder, "cpu")


@pytest.fixture
def calls(monkeypatch):
    """Every fit_select / fit_epochs call train_and_save makes: (which, positives, kwargs, result)."""
    seen = []

    def spy(which, real):
        def wrapper(model, data, **kwargs):
            result = real(model, data, **kwargs)
            seen.append((which, len(data.users), kwargs, result))
            return result
        return wrapper

    monkeypatch.setattr(protocol, "fit_select", spy("select", protocol.fit_select))
    monkeypatch.setattr(protocol, "fit_epochs", spy("epochs", protocol.fit_epochs))
    return seen


def outputs(folder) -> TrainingOutputs:
    return TrainingOutputs(out=folder / "gmf.pt", select=folder / "select" / "gmf.pt",
                           curve=folder / "curves" / "gmf.tsv", metrics=folder / "gmf.json")


def run(split, folder, refit: bool, build_refit=None) -> TrainingOutputs:
    params = parse_params({"train": {"batch_size": 128, "max_epochs": 6, "patience": 6, "refit": refit},
                           "gmf": {"dim": 8, "lr": 0.02}, "device": "cpu"})

    def build():
        torch.manual_seed(0)
        return GMF(split.num_users, split.num_items, dim=params.gmf.dim, biases=params.gmf.biases)

    paths = outputs(folder)
    train_and_save("pretrain_gmf", "gmf", build, split, params, paths, optimizer="adam", lr=params.gmf.lr,
                   l2=params.gmf.l2, build_refit=build_refit)
    return paths


def test_select_then_refit_writes_both_checkpoints_curve_and_summary(tmp_path, split, calls):
    paths = run(split, tmp_path / "on", refit=True)
    (_, selected_on, select_kwargs, selection), (_, refit_on, refit_kwargs, refit) = calls
    assert [call[0] for call in calls] == ["select", "epochs"]
    # Selection trains on training data only; the refit on training + each user's validation item,
    # for exactly the chosen number of epochs, with a seed of its own.
    assert selected_on == USERS * (LIKED - 2)
    assert refit_on == USERS * (LIKED - 2) + USERS
    assert refit_kwargs["epochs"] == refit.epochs_run == selection.best_epoch >= 1
    assert refit_kwargs["seed"] != select_kwargs["seed"]

    summary = json.loads(paths.metrics.read_text())
    assert summary["best_epoch"] == selection.best_epoch and summary["epochs_run"] == selection.epochs_run
    assert summary["refit"] == {"epochs": selection.best_epoch, "positives": refit_on,
                                "loss": refit.history[-1]["loss"]}
    assert summary["valid"] == {k: round(v, 6) for k, v in selection.best_valid.items()}

    shape = {"num_users": USERS, "num_items": ITEMS}
    selected, sel_ckpt = load_checkpoint(paths.select, "gmf", shape)
    final, final_ckpt = load_checkpoint(paths.out, "gmf", shape)
    assert sel_ckpt["info"] == {**summary, "trained_on": "train"}
    assert final_ckpt["info"] == {**summary, "trained_on": "train+valid"}
    assert sel_ckpt["params"]["train"]["refit"] is True and "mlp" not in sel_ckpt["params"]
    # `threads` changes how the weights are computed, not what they are: it stays out, so 1 and 2
    # threads give byte-identical checkpoints.
    assert "threads" not in sel_ckpt["params"] and "threads" not in final_ckpt["params"]
    # Each checkpoint holds the state of its own run: the best epoch, and the refit's last one.
    for name, value in selected.state_dict().items():
        assert torch.equal(value, selection.state_dict[name])
    for name, value in final.state_dict().items():
        assert torch.equal(value, refit.state_dict[name])
    assert not torch.equal(selected.path.user.weight, final.path.user.weight)

    # The curve is the selection run's: validation metrics of the model that never saw them.
    curve = pd.read_csv(paths.curve, sep="\t")
    assert list(curve.columns) == ["epoch", "loss", "valid_hr10", "valid_ndcg10"]
    assert curve["epoch"].tolist() == list(range(1, selection.epochs_run + 1))
    assert curve["valid_hr10"].notna().all()
    assert curve["loss"].tolist() == [row["loss"] for row in selection.history]


def test_without_refit_the_final_checkpoint_is_the_selected_one(tmp_path, split, calls):
    paths = run(split, tmp_path / "off", refit=False)
    assert [call[0] for call in calls] == ["select"]
    assert paths.out.read_bytes() == paths.select.read_bytes()
    assert "refit" not in json.loads(paths.metrics.read_text())


def test_selection_does_not_depend_on_refit_and_outputs_repeat_byte_for_byte(tmp_path, split):
    on, again, off = (run(split, tmp_path / name, refit=name != "off") for name in ("on", "again", "off"))
    for a, b in zip((on.out, on.select, on.curve, on.metrics), (again.out, again.select, again.curve, again.metrics)):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert on.curve.read_bytes() == off.curve.read_bytes()
    shape = {"num_users": USERS, "num_items": ITEMS}
    torch.testing.assert_close(load_checkpoint(off.select, "gmf", shape)[0].state_dict(),
                               load_checkpoint(on.select, "gmf", shape)[0].state_dict(), rtol=0, atol=0)


def test_the_refit_model_comes_from_build_refit_when_given(tmp_path, split, calls):
    built = []

    def build_refit():
        built.append(True)
        torch.manual_seed(1)
        return GMF(split.num_users, split.num_items, dim=8, biases=True)

    run(split, tmp_path / "neumf-like", refit=True, build_refit=build_refit)
    assert built == [True]
    (_, _, _, selection), (_, _, refit_kwargs, _) = calls
    assert refit_kwargs["epochs"] == selection.best_epoch
