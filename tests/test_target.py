"""Targets are validated data: every bad key or value is named with its file."""
import pytest
import yaml

from hwtune.target import TARGETS_DIR, TargetError, list_targets, load_target


def test_shipped_targets_load():
    names = {t.name for t in list_targets()}
    assert {"loihi2", "emulator"} <= names
    loihi = load_target("loihi")  # alias
    assert loihi.name == "loihi2" and loihi.weights.bits == 8 and loihi.membrane_bits == 24
    assert loihi.synaptic_delay == 1 and loihi.backend == "loihi"


def write(tmp_path, data):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture
def base():
    return yaml.safe_load((TARGETS_DIR / "emulator.yaml").read_text())


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["weights"].update(bits=1), "'weights.bits' = 1 is invalid"),
    (lambda d: d["weights"].update(scale="per-row"), "'weights.scale'"),
    (lambda d: d["state"].update(membrane_bits="24"), "'state.membrane_bits'"),
    (lambda d: d.update(colour="red"), "unknown key 'colour'"),
    (lambda d: d["time"].pop("steps_per_layer"), "missing key 'time.steps_per_layer'"),
    (lambda d: d["weights"].update(narrow=1), "'weights.narrow'"),
])
def test_bad_target_names_file_and_key(tmp_path, base, mutate, message):
    mutate(base)
    path = write(tmp_path, base)
    with pytest.raises(TargetError) as e:
        load_target(path)
    assert message in str(e.value) and path in str(e.value)


def test_loihi_backend_caps_weight_bits(tmp_path, base):
    base["backend"] = "loihi"
    base["weights"]["bits"] = 12
    with pytest.raises(TargetError, match="at most 8 bits"):
        load_target(write(tmp_path, base))


def test_unknown_target_and_bad_yaml(tmp_path):
    with pytest.raises(TargetError, match="unknown target 'tpu'.*loihi2"):
        load_target("tpu")
    bad = tmp_path / "bad.yaml"
    bad.write_text("weights: [unclosed")
    with pytest.raises(TargetError, match="not valid YAML"):
        load_target(str(bad))


def test_step_and_bit_limits():
    t = load_target("loihi2")
    t.check_steps([16, 16, 16])
    with pytest.raises(TargetError, match="layer 1 window of 2000 steps"):
        t.check_steps([16, 2000])
    with pytest.raises(TargetError, match="weights.bits"):
        t.check_bits(9)
    assert t.weight_format(4).bits == 4 and t.weight_format(4).bias_bits == t.weights.bias_bits
