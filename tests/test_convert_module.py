"""`hwtune convert module:function` on a module that is not an nn.Sequential: a small ResNet (a stem,
a basic block with an identity skip, one with a 1x1 projection, batch norms, global average pooling,
flatten, dropout, a linear read-out), trained briefly as ReLU on digits; and the ops convert refuses,
named with their place in the traced graph, the same from the CLI (exit code 3) and the API."""
import sys

import pytest
import torch

from hwtune import io
from hwtune.cli import main
from hwtune.data import load_dataset

NET = '''
import torch
import torch.nn as nn


class Block(nn.Module):
    """Two 3x3 convolutions with batch norm and a skip: the identity, or a 1x1 projection."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)
        self.proj = None
        if stride != 1 or c_in != c_out:
            self.proj = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.proj is None else self.proj(x)))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.block1, self.block2 = Block(6, 6, 1), Block(6, 12, 2)
        self.pool, self.drop, self.fc = nn.AdaptiveAvgPool2d(1), nn.Dropout(0.1), nn.Linear(12, 10)

    def forward(self, x):
        x = self.pool(self.block2(self.block1(self.stem(x))))
        return self.fc(self.drop(torch.flatten(x, 1)))


class WidthCat(ResNet):
    def forward(self, x):
        x = self.stem(x)
        return self.fc(torch.flatten(self.pool(torch.cat([x, self.block1(x)], dim=3)), 1)[:, :12])


class MaxPooled(ResNet):
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(8)


class Squared(ResNet):
    def forward(self, x):
        y = self.block1(self.stem(x))
        return self.fc(torch.flatten(self.pool(self.block2(y * y)), 1))


def resnet():
    return ResNet().double()


def width_cat():
    return WidthCat().double()


def max_pooled():
    return MaxPooled().double()


def squared():
    return Squared().double()
'''


@pytest.fixture
def usernet(tmp_path, monkeypatch):
    """The module ``usernet`` (NET) in a temporary working directory, imported."""
    (tmp_path / "usernet.py").write_text(NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("usernet", None)
    import usernet
    yield usernet
    sys.modules.pop("usernet", None)


def trained(model: torch.nn.Module, epochs: int = 3) -> torch.nn.Module:
    """``model`` trained as ReLU on the digits training set (float64, Adam, batches of 32)."""
    data = load_dataset("digits")
    x, y = data.train_x.double(), data.train_y
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def test_convert_a_users_resnet_keeps_its_outputs(usernet, tmp_path, capsys):
    from safetensors.torch import save_file
    model = trained(usernet.resnet())
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    assert main(["convert", "usernet:resnet", "--weights", "w.safetensors", "--dataset", "digits", "-o", "t"]) == 0
    assert "prediction agreement 100.00 %" in capsys.readouterr().out
    ttfs = io.load(tmp_path / "t")
    kinds = [d["kind"] for d in ttfs.arch]
    assert kinds.count("add") == 2 and kinds.count("globalpool") == 1 and kinds.count("conv2d") == 6
    x = load_dataset("digits").test_x.double()
    with torch.no_grad():
        relu, spiking = model(x), ttfs(x)
    assert ttfs.dtype == torch.float64
    assert ttfs.info["history"][-1]["relu_accuracy"] > 0.9                  # trained: the agreement means something
    # the TTFS net computes spike times t = t_max - relu(z) scaled by its windows, with the batch norms
    # folded into the synapses: the ReLU module's arithmetic in another order, so float64 rounding only.
    # Measured: 1.5e-14 on logits up to 11.2 (about 6 units in the last place); 1e-12 leaves 70x room
    assert torch.allclose(spiking, relu, atol=1e-12, rtol=0), float((spiking - relu).abs().max())
    assert torch.equal(spiking.argmax(1), relu.argmax(1))


@pytest.mark.parametrize("factory, where, why, accepted", [
    ("width_cat", "traced op 'cat' (cat)", "got dim=3", "only concatenation along the channels (dim=1) is supported"),
    ("max_pooled", "traced op 'pool' (MaxPool2d, module 'pool')", "max pooling has no single-spike integer mapping",
     "use average pooling"),
    ("squared", "traced op 'mul' (mul)", "call_function 'mul' cannot be converted to TTFS",
     "Accepted: a torch module that torch.fx traces"),
])
def test_an_unsupported_op_is_refused_naming_it_and_what_is_accepted(usernet, tmp_path, capsys, factory, where, why,
                                                                    accepted):
    from safetensors.torch import save_file
    import hwtune
    from hwtune.errors import HwtuneError
    model = getattr(usernet, factory)()
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    with pytest.raises(HwtuneError) as api:
        hwtune.convert(model, "digits")
    message = str(api.value)
    assert message.startswith(where) and why in message and accepted in message
    assert main(["convert", f"usernet:{factory}", "--weights", "w.safetensors", "--dataset", "digits", "-o", "t"]) == 3
    assert message in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
