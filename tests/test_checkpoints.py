"""Checkpoint reading: the training state onto its own shardings and parameters as host arrays,
both without orbax's "Sharding info not provided" fallback, and the config item alone."""

import logging
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jdc_jax import checkpoints
from jdc_jax.sharding import make_mesh, replicate

SHARDING_WARNING = "Sharding info not provided"


@pytest.fixture
def saved_state(tmp_path):
    """(checkpoints directory, the replicated state saved at step 7) as training saves it."""
    state = replicate({"step": jnp.array(7, jnp.int32),
                       "params": {"g_a": {"kernel": jnp.arange(12.0).reshape(3, 4)}},
                       "opt_state": {"count": jnp.array(3, jnp.int32)}}, make_mesh())
    directory = tmp_path / checkpoints.CHECKPOINT_SUBDIR
    manager = checkpoints.checkpoint_manager(directory)
    manager.save(7, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state),
                                            config=ocp.args.JsonSave({"model": "jicd",
                                                                      "rate_point": 2})))
    manager.wait_until_finished()
    manager.close()
    return directory, state


def sharding_messages(caught, caplog) -> list[str]:
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    return [message for message in messages if SHARDING_WARNING in message]


def test_restoring_the_training_state_warns_of_no_missing_sharding(saved_state, caplog):
    directory, state = saved_state
    like = jax.tree_util.tree_map(jnp.zeros_like, state)
    manager = checkpoints.checkpoint_manager(directory)
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restored = checkpoints.restore_state(manager, 7, like)
    manager.close()
    assert sharding_messages(caught, caplog) == []
    np.testing.assert_array_equal(restored["params"]["g_a"]["kernel"],
                                  np.arange(12.0).reshape(3, 4))
    assert int(restored["step"]) == 7
    assert restored["params"]["g_a"]["kernel"].sharding == like["params"]["g_a"]["kernel"].sharding


def test_restoring_parameters_warns_of_nothing(saved_state, caplog):
    directory, _ = saved_state
    # What the codec stores beside a step's items (codec.api), which orbax would call an item
    # it cannot restore.
    (directory / "7" / "coding_tables").mkdir()
    (directory / "7" / "coding_tables" / "manifest.json").write_text("{}")
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params, config, step = checkpoints.restore_params(directory)
    assert sharding_messages(caught, caplog) == []
    assert [record.getMessage() for record in caplog.records
            if record.levelno >= logging.WARNING] == []
    np.testing.assert_array_equal(params["g_a"]["kernel"], np.arange(12.0).reshape(3, 4))
    assert (config, step) == ({"model": "jicd", "rate_point": 2}, 7)


def test_a_restore_without_shardings_does_warn_so_the_checks_above_can_fail(saved_state,
                                                                            caplog):
    directory, _ = saved_state
    manager = checkpoints.checkpoint_manager(directory)
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manager.restore(7, args=ocp.args.Composite(state=ocp.args.PyTreeRestore()))
    manager.close()
    assert len(sharding_messages(caught, caplog)) >= 1


def test_the_config_is_read_without_the_parameters(saved_state, tmp_path):
    directory, _ = saved_state
    assert checkpoints.restore_config(directory) == ({"model": "jicd", "rate_point": 2}, 7)
    assert checkpoints.restore_config(directory / "7") == ({"model": "jicd", "rate_point": 2}, 7)
    with pytest.raises(FileNotFoundError, match="checkpoint step 8 not found"):
        checkpoints.restore_config(directory, step=8)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        checkpoints.restore_config(tmp_path / "elsewhere")
