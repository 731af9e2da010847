"""Attribution: which pixels or regions drive a target score.

For now the Grad-CAM baseline (through Captum); meaningful and extremal perturbations, the
other baselines and region Sobol attribution arrive with their issues.
"""

from convscope.attribution.baselines import default_layer, grad_cam

__all__ = ["default_layer", "grad_cam"]
