"""The docstrings' examples run (the callback's runs a two-epoch fit of a tiny network: a few seconds)."""
import doctest

import pytest

import lightning_mcuprune.callback
import lightning_mcuprune.pruning.schedule


@pytest.mark.parametrize("module", [lightning_mcuprune.pruning.schedule, lightning_mcuprune.callback])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
