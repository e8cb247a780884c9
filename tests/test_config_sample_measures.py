"""CONFIG keys of the sample measures and the decoding sweep: defaults, and one-line errors."""

import pytest

from data_pipeline.config import ExperimentConfig
from data_pipeline.errors import ConfigError


def test_the_sweep_is_on_by_default_with_a_three_by_three_grid():
    """On by default, as the demo measured it (~20 CPU s); the same default from every door."""
    config = ExperimentConfig.from_dict({})
    assert config.decoding_sweep is True and config.bleu_references == 2000
    assert config.decoding_sweep_samples >= 2 * config.num_samples  # self-BLEU needs many samples
    assert len(config.decoding_sweep_temperatures) * len(config.decoding_sweep_top_p) == 9


@pytest.mark.parametrize("bad, named", [
    ({"decoding_sweep_top_p": [0.9, 1.5]}, "decoding_sweep_top_p"),
    ({"decoding_sweep_temperatures": []}, "decoding_sweep_temperatures"),
    ({"decoding_sweep_temperatures": [0.0]}, "decoding_sweep_temperatures"),
    ({"bleu_references": 0}, "bleu_references"),
    ({"decoding_sweep_samples": 1}, "decoding_sweep_samples"),
])
def test_a_bad_grid_or_reference_count_fails_in_one_line_naming_the_key(bad, named):
    with pytest.raises(ConfigError) as error:
        ExperimentConfig.from_dict(bad)
    message = str(error.value)
    assert "\n" not in message and f"CONFIG['{named}']" in message
    assert any(fix in message for fix in ("(0, 1]", "(0, 10]", "greater than or equal to"))
