"""A multi-output model's outputs: names in model.outputs order, one loss and weight each."""

import keras
import numpy as np
import pytest

import stalldoc
from stalldoc.inputs.data import load_dataset
from stalldoc.inputs.outputs import output_names, resolve_output_losses


def model(as_dict=True):
    i = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu")(i)
    score = keras.layers.Dense(1, name="zz_score")(h)
    cls = keras.layers.Dense(3, activation="softmax", name="aa_cls")(h)
    return keras.Model(i, {"score": score, "cls": cls} if as_dict else [score, cls])


def test_names_follow_model_outputs_order():
    # Dict outputs: the keys (what compile and fit use), in model.outputs' (sorted) order.
    assert output_names(model()) == ["cls", "score"]
    assert output_names(model(as_dict=False)) == ["zz_score", "aa_cls"]


def test_compiled_dict_losses_and_weights_by_name():
    m = model()
    m.compile("adam", loss={"score": "mse", "cls": "sparse_categorical_crossentropy"},
              loss_weights={"score": 2.0, "cls": 0.5})
    losses, weights = resolve_output_losses("auto", m)
    assert [one.name for one in losses] == ["sparse_categorical_crossentropy", "mse"]
    assert weights == [0.5, 2.0]
    assert losses[0].reason.startswith("output 'cls': ")


def test_a_flag_loss_applies_to_every_output_and_auto_chooses_from_each_outputs_targets():
    m = model(as_dict=False)
    losses, weights = resolve_output_losses("mse", m)
    assert [one.name for one in losses] == ["mse", "mse"] and weights == [1.0, 1.0]
    targets = [np.linspace(-1, 1, 32)[:, None], np.arange(32) % 3]
    losses, _ = resolve_output_losses("auto", m, targets=lambda i: targets[i])
    assert [one.name for one in losses] == ["mean_squared_error", "sparse_categorical_crossentropy"]


def test_an_output_fit_does_not_train_is_refused_with_what_to_do():
    m = model()
    m.compile("adam", loss={"score": "mse"})
    x = np.zeros((16, 4), "float32")
    with pytest.raises(stalldoc.StalldocError, match="'cls' is compiled without a loss.*pass --loss"):
        stalldoc.diagnose(m, x, {"score": np.zeros((16, 1)), "cls": np.zeros(16)})
    losses, _ = resolve_output_losses("mse", m)  # --loss for every output: each is trained
    assert len(losses) == 2
    m.compile("adam", loss=["mse", "mse"], loss_weights=[1.0, 0.0])
    with pytest.raises(stalldoc.StalldocError, match="'score' has loss weight 0"):
        resolve_output_losses("auto", m)


def test_npz_targets_by_output_name_prefix_index_or_y_key(tmp_path):
    x = np.zeros((8, 4), "float32")
    a, b = np.ones((8, 1)), np.zeros((8, 1))
    for arrays, y_key, keys in [({"age": a, "kind": b}, None, ["age", "kind"]),
                                ({"y_age": a, "y_kind": b}, None, ["y_age", "y_kind"]),
                                ({"y0": a, "y1": b}, None, ["y0", "y1"]),
                                ({"p": a, "q": b}, "p,q", ["p", "q"])]:
        path = str(tmp_path / "d.npz")
        np.savez(path, x=x, **arrays)
        ds = load_dataset(path, ["input"], y_key=y_key, output_names=["age", "kind"])
        assert [key for key, _ in ds.targets_by_output.values()] == keys
        assert list(ds.targets_by_output) == ["age", "kind"] and ds.y_key == keys[0]
    with pytest.raises(stalldoc.StalldocError, match="one per output"):
        load_dataset(path, ["input"], y_key="p", output_names=["age", "kind"])
    np.savez(path, x=x, age=a, kind=np.ones((5, 1)))
    with pytest.raises(stalldoc.StalldocError, match="has 5 samples"):
        load_dataset(path, ["input"], output_names=["age", "kind"])
