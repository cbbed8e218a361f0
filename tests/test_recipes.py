"""Recipes: every value validated before any training; the quickstart pipeline runs end to end."""
import json
import runpy

import pytest
import yaml

from hwtune.cli import main
from hwtune.recipes import RecipeError, load_recipe, parse_recipe

GOOD = {"name": "r", "dataset": "digits", "target": "loihi2",
        "model": {"train": {"arch": "fc-small", "epochs": 1}},
        "passes": [{"quantize": {"bits": 4, "steps": 8, "epochs": 0}}]}


def bad(**change):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data.update(change)
    return data


def with_pass(name, **settings):
    return bad(passes=[{name: settings}])


@pytest.mark.parametrize("data,message", [
    (with_pass("quantise"), "passes[0]: unknown pass 'quantise'"),
    (with_pass("quantize", bits=12), "passes[0]: 12-bit weights: target loihi2 holds 2..8"),
    (with_pass("quantize", bits=4.5), "passes[0].quantize: bits = 4.5 must be an integer in [2, 16]"),
    (with_pass("quantize", steps=4, time_bits=3), "give steps or time_bits, not both"),
    (with_pass("quantize", time_bits=12), "window of 4095 steps: target loihi2 allows 1..1024"),   # the CLI's rule
    (with_pass("quantize", steps=[8, 8]), "steps lists 2 windows but the net has 1 hidden layer"),
    (with_pass("latency", steps=5000), "window of 5000 steps: target loihi2 allows 1..1024"),
    (with_pass("latency", window_quantile=2), "window_quantile = 2 must be a number in (0, 1]"),
    (with_pass("noise", jitter=0.1, colour=1), "unknown setting(s) colour"),
    (with_pass("noise", jitter=-1), "jitter = -1 must be a number in [0, 100]"),
    (with_pass("noise", jitter="big"), "jitter = 'big' must be a number"),
    (with_pass("noise", jitter=float("nan")), "jitter = nan must be a number"),
    (with_pass("noise", spike_deletion=1.5), "spike_deletion = 1.5 must be a number in [0, 1]"),
    (with_pass("noise", devices=0), "devices = 0 must be an integer in [1, 1000]"),
    (with_pass("noise", lr=-1), "lr = -1 must be a number in (0, 10]"),
    (with_pass("quantize", epochs=float("nan")), "epochs = nan"),
    (with_pass("quantize", epochs="lots"), "epochs = 'lots'"),
    (bad(deploy={"backend_samples": "ten"}), "deploy: backend_samples = 'ten' must be an integer"),
    (bad(deploy={"mode": "quick"}), "deploy: mode = 'quick' must be one of 'fast', 'stepped'"),
    (bad(deploy={"samples": -5}), "deploy: samples = -5 must be an integer >= 1"),
    (bad(seed=1.7), "seed = 1.7 must be an integer"),
    (bad(train_samples=-5), "train_samples = -5 must be an integer >= 1"),
    (bad(samples=0), "samples = 0 must be an integer >= 1"),
    (bad(target="tpu"), "target: unknown target 'tpu'"),
    (bad(dataset="imagenet"), "dataset: name = 'imagenet' must be one of"),
    (bad(dataset={"name": "digits", "split_seed": 2 ** 32}), "split_seed = 4294967296 must be an integer in [0, "
                                                                "4294967295]"),
    (bad(model={"train": {"arch": "fc", "epochz": 3}}), "model.train: unknown setting(s) epochz"),
    (bad(model={"train": {"arch": "resnet50"}}), "model.train: arch = 'resnet50' must be one of"),
    (bad(model={"load": "/no/such/model"}), "model.load: /no/such/model: not a model directory"),
    (bad(model="fc"), "model must be {train: {settings}} or {load: DIR}"),
    (bad(passes="quantize"), "passes must be a list"),
    (bad(extra=1), "unknown key(s) extra"),
])
def test_malformed_recipe_fails_before_training(data, message):
    with pytest.raises(RecipeError) as e:
        parse_recipe(data, "recipes/x.yaml")
    assert message in str(e.value) and "recipes/x.yaml" in str(e.value)


def test_recipe_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    path = tmp_path / "r.yaml"
    path.write_text("name: [")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(path)
    path.write_text("a: &a [1, 2]\n" + "".join(f"b{i}: &b{i} [*{'a' if i == 0 else f'b{i - 1}'}, "
                                              f"*{'a' if i == 0 else f'b{i - 1}'}]\n" for i in range(30)))
    with pytest.raises(RecipeError, match="expands to more than 100000 values"):
        load_recipe(path)


def test_quickstart_end_to_end(tmp_path, capsys):
    """make demo's recipe: torch == emulator on every test image, Lava == emulator spike for spike."""
    out = tmp_path / "qs"
    assert main(["run", "recipes/quickstart.yaml", "--out", str(out), "--seed", "0"]) == 0
    results = json.loads((out / "results.json").read_text())
    deploy = results["deploy"]
    assert deploy["torch_emulator_agreement"] == 1.0
    assert deploy["emulator"]["accuracy"] == pytest.approx(deploy["torch_accuracy"])
    assert deploy["emulator"]["accuracy"] > 0.9
    assert deploy["backend"]["backend"] == "lava"
    assert deploy["backend"]["identical_spike_for_spike"] == deploy["backend"]["samples"] == 20
    assert [s["stage"] for s in results["stages"]] == ["train", "quantize", "noise", "latency"]
    assert (out / "artifact" / "artifact.json").exists() and results["failed_checks"] == []
    printed = capsys.readouterr().out
    assert "lava backend == emulator spike for spike on 20/20" in printed and "chips: 1 of at most 8" in printed
    noise = results["stages"][2]           # the summary says what the noise pass is for: its gain under noise
    assert (f"  under noise (jitter 0.3; mean over 5 held-out device instances): "
            f"{100 * noise['noisy_accuracy_before']:.2f} % -> {100 * noise['noisy_accuracy_after']:.2f} %\n") in printed
    assert noise["noisy_accuracy_after"] > noise["noisy_accuracy_before"] + 0.03
    total = results["resources"]["total"]          # the Loihi 2 map: one core per layer for a net this small
    assert total["cores"] == 2 and total["neurons"] == 64 + 10
    # the stock build: every neuron and clock input spikes once, so one event per synapse
    assert total["synaptic_events"] == total["synapses"] and total["clock_inputs"] > 0
    # beside the model's events (the emulator's count: silent neurons send nothing), samples pipelined
    assert 0 < total["model_synaptic_events"] < total["synaptic_events"]
    assert total["sample_interval_steps"] & (total["sample_interval_steps"] - 1) == 0
    assert total["throughput_samples_per_s"] == pytest.approx(1e6 / (total["sample_interval_steps"] * 183))
    assert total["synaptic_events"] > 0 and total["energy_uj"] > total["static_energy_uj"] > 0
    table = runpy.run_path("scripts/make_results_table.py")["table"]([out / "results.json"])
    assert "| 100.00 % / 20/20 |" in table and "| total | | 74 | 2 |" in table
    for stage in ("01-quantize", "02-noise", "03-latency"):
        assert json.loads((out / stage / "hwtune.json").read_text())["target"]["name"] == "loihi2"
    assert main(["run", "recipes/quickstart.yaml", "--out", str(out)]) == 3       # an earlier run: --force
    assert "pass --force" in capsys.readouterr().err


def test_time_bits_over_the_target_is_refused_in_seconds(tmp_path, capsys):
    """`quantize: {time_bits: 12}` (4095 steps > loihi2's 1024) stops before the 40-epoch training."""
    import time
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "model": {"train": {"arch": "fc-small", "epochs": 40}},
                                    "passes": [{"quantize": {"bits": 4, "time_bits": 12}}]}))
    start = time.perf_counter()
    assert main(["run", str(path), "-o", str(tmp_path / "out")]) == 3
    assert time.perf_counter() - start < 5 and not (tmp_path / "out").exists()
    assert "4095 steps" in capsys.readouterr().err


@pytest.fixture(scope="module")
def brainscales_model(tmp_path_factory):
    """A small model quantized for brainscales2 (no fine-tuning)."""
    import hwtune
    data = hwtune.load_dataset("digits")
    net = hwtune.train(data, arch="fc-small", epochs=1, batch_size=64)
    net, _ = hwtune.quantize(net, data, target="brainscales2", bits=6, epochs=0)
    path = tmp_path_factory.mktemp("bs2") / "model"
    hwtune.save(net, path)
    return path


@pytest.mark.parametrize("passes", [[], [{"noise": {"jitter": 0.1, "epochs": 0}}],
                                    [{"latency": {"steps": 8, "epochs": 0}}]])
def test_a_model_for_another_target_is_refused_by_a_recipe(brainscales_model, tmp_path, passes):
    """As on the CLI: a brainscales2 model in a loihi2 recipe is refused before any work, naming both."""
    recipe = {"name": "r", "dataset": "digits", "target": "loihi2", "model": {"load": str(brainscales_model)},
              "passes": passes, "deploy": {"backend_samples": 0}}
    with pytest.raises(RecipeError, match="prepared for target 'brainscales2', not the recipe's 'loihi2'"):
        parse_recipe(recipe, "recipes/x.yaml")


def test_a_quantize_pass_may_move_a_model_to_the_recipes_target(brainscales_model, tmp_path):
    recipe = {"name": "r", "dataset": "digits", "target": "loihi2", "model": {"load": str(brainscales_model)},
              "passes": [{"quantize": {"bits": 4, "steps": 8, "epochs": 0}}]}
    assert parse_recipe(recipe, "recipes/x.yaml").passes[0][0] == "quantize"


def test_a_pass_never_relabels_a_model_for_another_target(brainscales_model):
    """passes.run_pass itself refuses (recipes, sweeps and studies call it): no silent relabelling."""
    import hwtune
    from hwtune.configs import NoiseConfig
    from hwtune.passes import PassContext, run_pass
    from hwtune.target import TargetError, load_target
    net = hwtune.load(brainscales_model)
    ctx = PassContext(data=hwtune.load_dataset("digits"), target=load_target("loihi2"))
    with pytest.raises(TargetError, match="prepared for target 'brainscales2', not 'loihi2'"):
        run_pass(net, NoiseConfig(jitter=0.1, epochs=0), ctx)
    assert net.info["target"]["name"] == "brainscales2"
