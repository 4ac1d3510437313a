"""One exception family for quant. Messages name the layer, module path or parameter at fault."""


class QuantError(Exception):
    """Base class of every error quant raises for bad input or an impossible request."""


class UnsupportedOpError(QuantError):
    """torch.fx capture met an operation quant cannot represent."""


class CalibrationError(QuantError):
    """Calibration data or observers are missing or invalid."""


class DegenerateChannelWarning(UserWarning):
    """A layer's weight channels were given adjusted scales: all-zero, negligibly small beside
    the layer's, or with a bias its fitted scale cannot hold (see ``quant.QuantConfig``)."""
