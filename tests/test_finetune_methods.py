"""Less quantization loss: window search, cosine schedule, distillation from the net as the pass got it."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

import hwtune
from hwtune.errors import ConfigError
from hwtune.training import TrainConfig, distillation_loss, logits_of, make_optimizer
from hwtune.ttfs.windows import SEARCH_SCALES, search_windows


@pytest.fixture(scope="module")
def net(digits_net):
    return digits_net


def test_cosine_schedule_goes_from_lr_to_zero():
    model = torch.nn.Linear(2, 2)
    opt, sched = make_optimizer(model, TrainConfig(lr=0.1), total_steps=10, schedule="cosine")
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[5] == pytest.approx(0.05)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert lrs[1] == pytest.approx(0.05 * (1 + math.cos(math.pi / 10)))


def test_distillation_loss_mixes_cross_entropy_and_kl():
    torch.manual_seed(0)
    logits, y, x = torch.randn(6, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1]), torch.randn(6, 4)
    teacher = torch.nn.Identity()
    ce = F.cross_entropy(logits, y)
    assert float(distillation_loss(logits, y, teacher, x, 0.0)) == float(ce)
    kl = F.kl_div(F.log_softmax(logits, 1), F.softmax(x.double(), 1), reduction="batchmean")
    assert float(distillation_loss(logits, y, teacher, x, 1.0)) == pytest.approx(float(kl))
    assert float(distillation_loss(x.double(), y, teacher, x, 1.0)) == pytest.approx(0.0, abs=1e-12)
    assert float(distillation_loss(logits, y, teacher, x, 0.25)) == pytest.approx(0.75 * float(ce) + 0.25 * float(kl))


def test_full_distillation_ignores_the_labels(net, digits):
    """distill = 1: fine-tuning follows the net as the pass got it, so shuffled labels change nothing;
    with distill = 0 they do."""
    order = torch.randperm(len(digits.train_y), generator=torch.Generator().manual_seed(1))
    shuffled = dataclasses.replace(digits, train_y=digits.train_y[order])
    settings = dict(bits=4, steps=16, epochs=0.5, lr=1e-3, report_samples=0)
    given = [p.clone() for p in net.state_dict().values()]
    a, _ = hwtune.quantize(net, digits, distill=1.0, **settings)
    b, _ = hwtune.quantize(net, shuffled, distill=1.0, **settings)
    c, _ = hwtune.quantize(net, shuffled, distill=0.0, **settings)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))
    assert all(torch.equal(p, q) for p, q in zip(given, net.state_dict().values()))   # the teacher is left as it was


def test_window_search_shortens_a_window_that_is_too_long(net, digits):
    q, _ = hwtune.quantize(net, digits, bits=8, steps=8, epochs=0, report_samples=0)
    fitted = q.windows.clone()
    q.windows[0] = 4 * fitted[0]
    x, y = digits.train_x[:1000], digits.train_y[:1000]
    before = float(F.cross_entropy(logits_of(q, x), y))
    chosen = search_windows(q, x, y)
    assert len(chosen) == 2 and set(chosen) <= set(SEARCH_SCALES)
    assert chosen[0] <= 0.5 and float(q.windows[0]) <= 2 * float(fitted[0])
    assert float(F.cross_entropy(logits_of(q, x), y)) < before


def test_quantize_records_the_searched_scales(net, digits):
    _, plain = hwtune.quantize(net, digits, bits=4, steps=8, epochs=0, report_samples=0)
    _, searched = hwtune.quantize(net, digits, bits=4, steps=8, epochs=0, report_samples=0, window_search=True)
    assert plain["window_scales"] is None and len(searched["window_scales"]) == 2


@pytest.mark.parametrize("settings, message", [({"schedule": "linear"}, "schedule"), ({"distill": 1.5}, "distill"),
                                               ({"distill": float("nan")}, "distill"),
                                               ({"window_search": "yes"}, "window_search")])
def test_bad_settings_are_refused(net, digits, settings, message):
    with pytest.raises(ConfigError, match=message):
        hwtune.quantize(net, digits, **settings)


def test_sweep_point_ids_leave_out_the_new_settings_at_their_default():
    """The committed CI sweep's ids stay (resume keeps working); a fine-tuning that distils gets its own."""
    from pathlib import Path

    from hwtune.study import load_sweep
    from hwtune.sweep import point_id, read_points

    sweep = load_sweep("recipes/robustness-ci.yaml")
    committed = {r["id"] for r in read_points(Path("docs/results/robustness-ci"))}
    assert {point_id(sweep, p) for p in sweep.points} == committed
    sweep.finetune = sweep.finetune.replace(distill=0.5)
    changed = {point_id(sweep, p) for p in sweep.points if p["finetune"]}
    assert changed and not changed & committed
