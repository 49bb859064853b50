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


def test_a_job_directory_name_is_one_path_part_whatever_the_values_hold():
    from experiments.run.resolvers import _path_part

    for dirname in ["data.root=/tmp/x/../y", "+note=x/../../../outside/esc", "a=..", "tag=a\nb", "w=" + "9" * 400]:
        name = resolved(f"subdir: 3_${{path_part:'{dirname.replace(chr(10), '')}'}}")["subdir"]
        assert "/" not in name and "\n" not in name and len(name.encode()) <= 210 and name.startswith("3_")
    assert _path_part("a\nb") == "a_b" and _path_part("data.root=/x") == "data.root=_x"
    long = [_path_part("w=" + "9" * 400), _path_part("w=" + "9" * 399 + "8")]
    assert long[0] != long[1]  # cut names keep a digest of the whole: two jobs, two directories
    assert _path_part("activation=relu,optimizer.lr=0.1") == "activation=relu,optimizer.lr=0.1"  # as before
