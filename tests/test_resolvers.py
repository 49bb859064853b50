"""The config resolvers: a run's default name, MLflow's tags, the repeated widths (end to end through train.py:
test_train's tags and run-name test)."""

from omegaconf import OmegaConf

from experiments.run.resolvers import register_resolvers


def resolved(yaml: str) -> dict:
    register_resolvers()
    return OmegaConf.to_container(OmegaConf.create(yaml), resolve=True)


def test_a_run_composed_without_hydra_is_named_defaults_and_its_tags_become_mlflow_keys(monkeypatch):
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # no Hydra run set up, whatever ran before
    cfg = resolved("run_name: ${readable_run_name:}\ntags: [baseline, lr_study]\nmlflow: ${as_mlflow_tags:${tags}}")
    assert cfg == {"run_name": "defaults", "tags": ["baseline", "lr_study"], "mlflow": {"baseline": "", "lr_study": ""}}


def test_repeat_gives_a_width_per_layer_and_run_ids_differ():
    assert resolved("h: ${repeat:32,3}")["h"] == [32, 32, 32]
    assert resolved("a: ${run_id:}")["a"] != resolved("a: ${run_id:}")["a"]
