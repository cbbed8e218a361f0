"""Hardware passes (quantize, noise, latency): config dataclasses registered against handlers."""
from hwtune.passes.base import PASSES, FinetuneOptions, PassContext, PassError, parse_pass, run_pass
from hwtune.passes.latency import LatencyConfig
from hwtune.passes.noise import NoiseConfig
from hwtune.passes.quantize import QuantizeConfig

__all__ = ["PASSES", "FinetuneOptions", "LatencyConfig", "NoiseConfig", "PassContext", "PassError",
           "QuantizeConfig", "parse_pass", "run_pass"]
