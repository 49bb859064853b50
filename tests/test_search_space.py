"""``config/search_space.py``: hydra-optuna-sweeper's search-space grammar, read into Optuna 5's distributions."""

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from experiments.config.search_space import overrides_of, parse
from experiments.errors import ExperimentError

# hydra-optuna-sweeper's documented examples (its README and Hydra's page for the plugin, and
# lightning-hydra-template's mnist_optuna.yaml), each with the distribution that plugin built, in Optuna 5's
# names: Uniform -> Float, LogUniform -> Float(log), DiscreteUniform -> Float(step), IntUniform -> Int
EXAMPLES = {
    "x=range(-5.5, 5.5, step=0.5)": FloatDistribution(-5.5, 5.5, step=0.5),
    "y=choice(-5, 0, 5)": CategoricalDistribution((-5, 0, 5)),
    "z=choice(0, 3, 5)": CategoricalDistribution((0, 3, 5)),
    "model.optimizer.lr=interval(0.0001, 0.1)": FloatDistribution(0.0001, 0.1),
    "data.batch_size=choice(32, 64, 128, 256)": CategoricalDistribution((32, 64, 128, 256)),
    "model.net.lin1_size=choice(64, 128, 256)": CategoricalDistribution((64, 128, 256)),
    "optimizer.lr=tag(log, interval(0.0003, 0.03))": FloatDistribution(0.0003, 0.03, log=True),
    "search.depth=range(1, 4)": IntDistribution(1, 4),  # the plugin's range includes its stop
    "search.width=range(32, 256, step=32)": IntDistribution(32, 256, step=32),
    "activation=relu,elu": CategoricalDistribution(("relu", "elu")),
    "flag=choice(true, false)": CategoricalDistribution((True, False)),
    "order=shuffle(range(1, 4))": None,  # categorical of 1, 2, 3 in a shuffled order: checked below
}


@pytest.mark.parametrize("line", sorted(EXAMPLES))
def test_each_documented_expression_reads_into_the_distribution_the_plugin_built(line):
    searched, fixed = parse([line])
    (key,) = searched
    assert fixed == {} and key == line.split("=")[0]
    if EXAMPLES[line] is None:
        assert isinstance(searched[key], CategoricalDistribution) and sorted(searched[key].choices) == [1, 2, 3]
    else:
        assert searched[key] == EXAMPLES[line]


def test_a_key_given_twice_is_the_later_lines_the_command_line_over_the_configs_params():
    searched, fixed = parse([*overrides_of({"search.depth": "range(1, 4)", "seed": "0"}), "search.depth=2", "seed=1,2"])
    assert fixed == {"search.depth": "2"} and searched == {"seed": CategoricalDistribution((1, 2))}


def test_a_plain_value_is_fixed_as_typed_and_params_read_as_overrides():
    searched, fixed = parse(overrides_of({"trainer.max_epochs": 5, "+note": "'a b'", "seed": "interval(0, 1)"}))
    assert fixed == {"trainer.max_epochs": "5", "+note": "'a b'"}
    assert searched == {"seed": FloatDistribution(0.0, 1.0)}


@pytest.mark.parametrize(
    "line, says",
    [
        ("optimizer.lr=interval(0.1", "the search space's 'optimizer.lr=interval(0.1' cannot be read"),
        ("optimizer.lr=tag(log, interval(0, 1))", "cannot be read"),  # a log scale from 0: Optuna refuses
        ("optimizer.lr=interval(0.5, 0.1)", "cannot be read"),  # the ends reversed
        ("x=glob(*)", "cannot be read"),  # a glob chooses config groups' options, no values
    ],
)
def test_an_expression_that_cannot_work_is_one_line_naming_it(line, says):
    with pytest.raises(ExperimentError) as caught:
        parse([line])
    assert says in str(caught.value) and "\n" not in str(caught.value)
