"""scripts/keras_lecture.py (the lecture's Keras program on PyTorch) against ``experiment=hands_on_keras``:
the same test accuracy within one point, averaged over three seeds."""

import importlib.util
import json
import statistics

import pytest

from conftest import read_metrics, start_script

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("keras") is None,
        reason="Keras 3 is not installed: pip install -e '.[keras]' (CI installs it with .[dev])",
    ),
]
SEEDS = ["0", "1", "2"]


def test_keras_and_the_framework_reach_the_same_test_accuracy(tmp_path):
    # one core each, side by side: the two programs take about as long as one
    keras_run = start_script(["--seeds", *SEEDS, "--threads", "1"], tmp_path, script="scripts/keras_lecture.py")
    framework = start_script(
        [
            "-m",
            "experiment=hands_on_keras",
            f"seed={','.join(SEEDS)}",
            "threads=1",
            "print_config=false",
            "callbacks.progress_bar=null",
        ],
        tmp_path,
    )
    keras_out, keras_err = keras_run.communicate(timeout=600)
    _, framework_err = framework.communicate(timeout=600)
    assert keras_run.returncode == 0, keras_err[-2000:]
    assert framework.returncode == 0, framework_err[-2000:]

    keras_results = [json.loads(line) for line in keras_out.splitlines() if line.startswith("{")]
    assert [r["seed"] for r in keras_results] == [0, 1, 2] and {r["train_images"] for r in keras_results} == {55_000}
    jobs = sorted(tmp_path.glob("outputs/multirun/*/*/*/metrics.json"))
    runs = [read_metrics(j.parent) for j in jobs]
    assert len(runs) == 3 and all(r["status"] == "completed" and r["epochs"] == 1 for r in runs)
    assert sorted(r["global_step"] for r in runs) == [860] * 3  # 55,000 images at batch 64, one epoch

    keras_acc = statistics.mean(r["test/acc"] for r in keras_results)
    framework_acc = statistics.mean(r["test/acc"] for r in runs)
    print(f"mean test/acc over seeds 0-2: keras {keras_acc:.4f}, framework {framework_acc:.4f}")
    assert keras_acc > 0.9 and framework_acc > 0.9
    assert abs(keras_acc - framework_acc) <= 0.01
