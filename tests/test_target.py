"""Targets are validated data: every bad key or value is named with its file; models keep theirs."""
import pytest
import yaml

from hwtune.target import TARGETS_DIR, TargetError, differences, list_targets, load_target, target_from_record


def test_shipped_targets_load():
    names = {t.name for t in list_targets()}
    assert {"loihi2", "emulator"} <= names
    loihi = load_target("loihi")  # alias
    assert loihi.name == "loihi2" and loihi.weights.bits == 8 and loihi.membrane_bits == 24
    assert loihi.synaptic_delay == 1 and loihi.backend == "lava"
    assert loihi.chip.cores_per_chip == 128 and loihi.chip.neurons_per_core == 4096
    assert load_target("emulator").chip is None


def test_every_chip_number_cites_its_source():
    """Each key of loihi2.yaml's chip section carries a comment (source, or 'E' for an estimate)."""
    text = (TARGETS_DIR / "loihi2.yaml").read_text().split("\nchip:\n")[1]
    keys = [line for line in text.splitlines() if line.startswith("  ") and not line.lstrip().startswith("#")
            and ":" in line and not line.startswith("    ")]
    assert len(keys) >= 10
    for line in keys:
        assert "#" in line, f"no source comment: {line}"


def write(tmp_path, data):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture
def base():
    return yaml.safe_load((TARGETS_DIR / "emulator.yaml").read_text())


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["weights"].update(bits=1), "weights: bits = 1 must be an integer in [2, 16]"),
    (lambda d: d["weights"].update(scale="per-row"), "weights: scale = 'per-row' must be one of"),
    (lambda d: d["state"].update(membrane_bits="24"), "state: membrane_bits = '24'"),
    (lambda d: d.update(colour="red"), "unknown setting(s) colour"),
    (lambda d: d["time"].pop("steps_per_layer"), "missing key(s) time.steps_per_layer"),
    (lambda d: d["weights"].update(narrow=1), "weights: narrow = 1 must be true or false"),
    (lambda d: d.update(synaptic_delay=1000000), "synaptic_delay = 1000000 must be an integer in [1, 62]"),
    (lambda d: d["weights"].update(exp_range=[3, -3]), "exp_range = [3, -3]"),
    (lambda d: d.update(chip={"cores_per_chip": float("nan")}), "chip: cores_per_chip = nan"),
    (lambda d: d.update(weights="eight"), "weights = 'eight' must be a mapping"),
])
def test_bad_target_names_file_and_key(tmp_path, base, mutate, message):
    mutate(base)
    path = write(tmp_path, base)
    with pytest.raises(TargetError) as e:
        load_target(path)
    assert message in str(e.value) and path in str(e.value)


def test_lava_backend_caps_weight_bits(tmp_path, base):
    base["backend"] = "lava"
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


def test_a_recorded_target_round_trips_and_look_alikes_differ(tmp_path):
    loihi = load_target("loihi2")
    assert target_from_record(loihi.to_dict(), "m") == loihi and differences(loihi, loihi) == []
    assert target_from_record("loihi2", "m") == loihi          # hwtune 0.1 models record the name only
    data = loihi.to_dict()
    data["state"]["membrane_bits"] = 16                         # a custom file that calls itself loihi2
    fake = target_from_record(data, "m")                        # a model recording a look-alike loihi2
    assert fake.name == "loihi2" and differences(loihi, fake) == ["state.membrane_bits: 24 vs 16"]
    with pytest.raises(TargetError, match="of the shipped target 'loihi2' but differs"):
        load_target(write(tmp_path, data))                      # a file may not pass for loihi2


def test_a_model_stays_prepared_for_a_target_whose_chip_description_changed():
    """The chip section only feeds the resource map: revising it (Loihi 2's max_chips, conv weight
    sharing) does not turn a quantized model into one for another target; any other setting does."""
    from dataclasses import replace

    from hwtune.target import model_differences
    loihi = load_target("loihi2")
    revised = replace(loihi, chip=replace(loihi.chip, max_chips=1, conv_weight_sharing=False))
    assert differences(loihi, revised) == ["chip.conv_weight_sharing: True vs False", "chip.max_chips: 8 vs 1"]
    assert model_differences(loihi, revised) == []
    other = replace(revised, state=replace(loihi.state, membrane_bits=16))
    assert model_differences(loihi, other) == ["state.membrane_bits: 24 vs 16"]
