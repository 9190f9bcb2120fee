"""ncf.models: GMF, MLP, NeuMF; score_all == forward on every pair; the alpha fusion; checkpoints."""

from __future__ import annotations

import pytest
import torch

import ncf.models as models
from ncf.models import (
    GMF,
    MLP,
    CheckpointError,
    NeuMF,
    count_parameters,
    load_checkpoint,
    neumf_from_pretrained,
    save_checkpoint,
)

NUM_USERS, NUM_ITEMS = 7, 11


def randomise(model: torch.nn.Module, seed: int = 0, std: float = 0.5) -> torch.nn.Module:
    """Replace the paper's tiny init (std 0.01, zero biases) with values large enough that a
    wrong formula cannot hide inside allclose's tolerance."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model.eval()


def all_pairs(num_users=NUM_USERS, num_items=NUM_ITEMS):
    users = torch.arange(num_users).repeat_interleave(num_items)
    items = torch.arange(num_items).repeat(num_users)
    return users, items


def build(kind: str, biases: bool = True, seed: int = 0):
    if kind == "gmf":
        model = GMF(NUM_USERS, NUM_ITEMS, dim=4, biases=biases)
    elif kind == "mlp":
        model = MLP(NUM_USERS, NUM_ITEMS, dim=3, layers=[8, 6, 4])
    else:
        model = NeuMF(NUM_USERS, NUM_ITEMS, gmf_dim=4, gmf_biases=biases, mlp_dim=3, layers=[8, 4])
    return randomise(model, seed)


MODEL_CASES = [("gmf", True), ("gmf", False), ("mlp", False), ("neumf", True), ("neumf", False)]


@pytest.mark.parametrize(("kind", "biases"), MODEL_CASES)
def test_forward_shapes(kind, biases):
    model = build(kind, biases)
    users = torch.tensor([0, 3, 6, 6, 1])
    items = torch.tensor([10, 0, 5, 5, 2])
    out = model(users, items)
    assert out.shape == (5,)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # Same pair, same logit; the model does not depend on the batch it is in.
    assert out[2] == out[3]
    assert torch.allclose(model(users[:1], items[:1]), out[:1])
    assert model.score_all(torch.tensor([2, 0])).shape == (2, NUM_ITEMS)


@pytest.mark.parametrize(("kind", "biases"), MODEL_CASES)
def test_score_all_equals_forward_on_every_pair(kind, biases):
    model = build(kind, biases)
    users, items = all_pairs()
    with torch.no_grad():
        expected = model(users, items).view(NUM_USERS, NUM_ITEMS)
        got = model.score_all(torch.arange(NUM_USERS))
    assert got.shape == (NUM_USERS, NUM_ITEMS)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    # A subset of users in any order, with a repeat.
    subset = torch.tensor([5, 0, 5, 2])
    with torch.no_grad():
        assert torch.allclose(model.score_all(subset), expected[subset], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("kind", "biases"), [("mlp", False), ("neumf", True)])
@pytest.mark.parametrize("budget", [1, 200, 264])
def test_score_all_chunked_by_pair_budget(monkeypatch, kind, biases, budget):
    model = build(kind, biases, seed=3)
    users, items = all_pairs()
    with torch.no_grad():
        expected = model(users, items).view(NUM_USERS, NUM_ITEMS)
        unchunked = model.score_all(torch.arange(NUM_USERS))
    # Count how many chunks the tower runs, to be sure the small budget really splits the work.
    calls = []
    tower = model.path.tower if kind == "mlp" else model.mlp.tower
    handle = tower[1].register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    monkeypatch.setattr(models, "PAIR_BUDGET", budget)
    try:
        with torch.no_grad():
            chunked = model.score_all(torch.arange(NUM_USERS))
    finally:
        handle.remove()
    assert len(calls) > 1, "the small PAIR_BUDGET did not force chunking"
    assert sum(calls) == NUM_USERS
    assert torch.allclose(chunked, expected, atol=1e-5, rtol=1e-5)
    assert torch.allclose(chunked, unchunked, atol=1e-6)


def test_gmf_biases_change_the_logit():
    model = build("gmf", True)
    users, items = all_pairs()
    with torch.no_grad():
        with_bias = model(users, items)
        model.path.user_bias.weight.add_(1.0)
        assert torch.allclose(model(users, items), with_bias + 1.0, atol=1e-6)
        assert torch.allclose(model.score_all(torch.arange(NUM_USERS)).flatten(), with_bias + 1.0, atol=1e-5)


def test_biases_zero_initialised_and_embeddings_small():
    torch.manual_seed(0)
    model = GMF(50, 60, dim=16, biases=True)
    assert torch.count_nonzero(model.path.user_bias.weight) == 0
    assert torch.count_nonzero(model.path.item_bias.weight) == 0
    assert 0.005 < float(model.path.user.weight.detach().std()) < 0.02


@pytest.mark.parametrize("biases", [True, False])
@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.0, 1.0])
def test_fusion_identity(biases, alpha):
    gmf = randomise(GMF(NUM_USERS, NUM_ITEMS, dim=4, biases=biases), seed=1)
    mlp = randomise(MLP(NUM_USERS, NUM_ITEMS, dim=3, layers=[8, 4]), seed=2)
    fused = neumf_from_pretrained(gmf, mlp, alpha=alpha).eval()
    assert isinstance(fused, NeuMF)
    users, items = all_pairs()
    with torch.no_grad():
        g, m = gmf(users, items), mlp(users, items)
        want = alpha * g + (1 - alpha) * m
        assert torch.allclose(fused(users, items), want, atol=1e-6, rtol=0)
        full = fused.score_all(torch.arange(NUM_USERS))
        assert torch.allclose(full.flatten(), want, atol=1e-5, rtol=0)
    if alpha == 0.5:
        assert torch.allclose(fused(users, items), 0.5 * (g + m), atol=1e-6, rtol=0)


def test_fusion_copies_do_not_share_storage():
    gmf = randomise(GMF(NUM_USERS, NUM_ITEMS, dim=4, biases=True), seed=1)
    mlp = randomise(MLP(NUM_USERS, NUM_ITEMS, dim=3, layers=[8, 4]), seed=2)
    before = {k: v.clone() for k, v in gmf.state_dict().items()}
    fused = neumf_from_pretrained(gmf, mlp, alpha=0.5)
    with torch.no_grad():
        fused.gmf.user.weight.add_(1.0)
    for k, v in gmf.state_dict().items():
        assert torch.equal(v, before[k]), k  # neither the fusion nor training NeuMF changes GMF


def test_fusion_refuses_mismatched_shapes():
    gmf = GMF(NUM_USERS, NUM_ITEMS, dim=4)
    mlp = MLP(NUM_USERS + 1, NUM_ITEMS, dim=3, layers=[8, 4])
    with pytest.raises(ValueError):
        neumf_from_pretrained(gmf, mlp)


def test_count_parameters():
    model = GMF(5, 6, dim=3, biases=True)
    assert count_parameters(model) == 5 * 3 + 6 * 3 + 5 + 6 + 3 + 1


# --- checkpoints -------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "biases"), [("gmf", True), ("mlp", False), ("neumf", True)])
def test_checkpoint_round_trip(tmp_path, kind, biases):
    model = build(kind, biases, seed=4)
    path = tmp_path / "sub" / f"{kind}.pt"
    save_checkpoint(model, path, kind=kind, params={"seed": 0, "mlp": {"layers": [8, 4]}},
                    info={"best_epoch": 3})
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    # Plain tensors and types only: loadable with weights_only=True.
    raw = torch.load(path, weights_only=True)
    assert raw["kind"] == kind and raw["info"] == {"best_epoch": 3}
    assert raw["model_args"] == model.model_args
    loaded, ckpt = load_checkpoint(path, kind, expected_args={"num_users": NUM_USERS, "num_items": NUM_ITEMS})
    assert type(loaded) is type(model)
    assert ckpt["params"] == {"seed": 0, "mlp": {"layers": [8, 4]}}
    loaded.eval()
    users, items = all_pairs()
    with torch.no_grad():
        assert torch.equal(loaded(users, items), model(users, items))
        assert torch.equal(loaded.score_all(torch.arange(NUM_USERS)), model.score_all(torch.arange(NUM_USERS)))


def test_checkpoint_expected_layers_list(tmp_path):
    model = build("mlp")
    path = tmp_path / "mlp.pt"
    save_checkpoint(model, path, kind="mlp", params={}, info={})
    load_checkpoint(path, "mlp", {"dim": 3, "layers": [8, 6, 4]})
    with pytest.raises(CheckpointError, match="layers"):
        load_checkpoint(path, "mlp", {"layers": [8, 4]})


def test_checkpoint_other_args_refused(tmp_path):
    model = build("gmf", True)
    path = tmp_path / "gmf.pt"
    save_checkpoint(model, path, kind="gmf", params={}, info={})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, "gmf", {"num_users": NUM_USERS, "dim": 8})
    msg = str(info.value)
    assert "dim" in msg and "8" in msg and "4" in msg
    with pytest.raises(CheckpointError, match="biases"):
        load_checkpoint(path, "gmf", {"biases": False})


def test_checkpoint_wrong_kind(tmp_path):
    path = tmp_path / "gmf.pt"
    save_checkpoint(build("gmf"), path, kind="gmf", params={}, info={})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, "mlp")
    assert "'gmf'" in str(info.value) and "'mlp'" in str(info.value)


def test_checkpoint_garbage_file(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint\x00\x01\x02" * 10)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, "gmf")
    assert "\n" not in str(info.value)


def test_checkpoint_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt", "gmf")


def test_checkpoint_foreign_torch_file(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(path, "gmf")


class Unsafe:
    """An arbitrary class: weights_only loading must refuse to unpickle it."""


def test_checkpoint_with_pickled_object_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": models.CHECKPOINT_FORMAT, "kind": "gmf", "obj": Unsafe()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path, "gmf")


def test_checkpoint_bytes_do_not_depend_on_the_file_name(tmp_path):
    model = build("neumf")
    for name in ("a.pt", "b.pt"):
        save_checkpoint(model, tmp_path / name, kind="neumf", params={"seed": 0}, info={})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


@pytest.mark.parametrize("kind", ["mlp", "neumf"])
def test_projected_first_layer_gives_the_same_logits_l2_and_gradients(kind):
    # A batch larger than users + items takes the projected-table path; one pair at a time
    # takes the per-pair path. Both must compute the same function and the same gradients.
    gen = torch.Generator().manual_seed(1)
    users = torch.randint(NUM_USERS, (3 * (NUM_USERS + NUM_ITEMS),), generator=gen)
    items = torch.randint(NUM_ITEMS, users.shape, generator=gen)

    def loss_and_grads(batches):
        model = build(kind, seed=5).train()
        model.zero_grad()
        logits, reg = [], []
        for u, i in batches:
            logits.append(model(u, i, reg))
        logits = torch.cat(logits)
        (logits.sum() + sum(reg)).backward()
        return logits.detach(), float(sum(reg).detach()), {n: p.grad.clone() for n, p in model.named_parameters()}

    whole = loss_and_grads([(users, items)])
    per_pair = loss_and_grads([(users[k:k + 1], items[k:k + 1]) for k in range(len(users))])
    torch.testing.assert_close(whole[0], per_pair[0], rtol=1e-5, atol=1e-5)
    assert whole[1] == pytest.approx(per_pair[1], rel=1e-5)
    for name, grad in whole[2].items():
        torch.testing.assert_close(grad, per_pair[2][name], rtol=1e-4, atol=1e-5, msg=name)
