"""Hardware passes (quantize, noise, latency): handlers registered against the config dataclasses
of hwtune.configs (see base.py for the contract)."""
from hwtune.configs import PASS_CONFIGS, LatencyConfig, NoiseConfig, QuantizeConfig
from hwtune.passes import latency, noise, quantize  # noqa: F401  (registers the handlers)
from hwtune.passes.base import PassContext, PassError, record_lines, run_pass

__all__ = ["PASS_CONFIGS", "LatencyConfig", "NoiseConfig", "PassContext", "PassError", "QuantizeConfig",
           "record_lines", "run_pass"]
