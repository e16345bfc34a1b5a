"""Sequential Monte Carlo: the engine, resampling schemes and the result type."""

from potentia.result import Result
from potentia.smc.engine import smc
from potentia.smc.resampling import SCHEMES, multinomial, residual, stratified, systematic

__all__ = ["smc", "Result", "SCHEMES", "multinomial", "stratified", "systematic", "residual"]
