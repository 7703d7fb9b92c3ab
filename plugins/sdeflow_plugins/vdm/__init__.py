"""Plugin ``vdm``: variational diffusion models (Kingma et al. 2021) with a learned noise schedule.

The process ``vdm`` (:class:`VDMProcess`), its schedules (:class:`LearnedGamma`,
:class:`LinearGamma`), the VDM bound (:func:`vdm_loss` and its terms) and the discretised
decoder. See ``docs/plugins/vdm.md``.
"""

import sdeflow

from .decoder import decode_levels, decoder_log_probs, discretized_gaussian_log_prob, level_values
from .loss import VLBTerms, diffusion_loss, prior_loss, reconstruction_loss, vdm_loss, vlb_breakdown, vlb_terms
from .process import VDMProcess
from .schedule import GammaSchedule, LearnedGamma, LinearGamma


@sdeflow.hookimpl
def sdeflow_register_processes(registry: sdeflow.RegistryView) -> None:
    """Register ``vdm``."""
    registry.add("vdm", VDMProcess)


__all__ = [
    "GammaSchedule",
    "LearnedGamma",
    "LinearGamma",
    "VDMProcess",
    "VLBTerms",
    "decode_levels",
    "decoder_log_probs",
    "diffusion_loss",
    "discretized_gaussian_log_prob",
    "level_values",
    "prior_loss",
    "reconstruction_loss",
    "vdm_loss",
    "vlb_breakdown",
    "vlb_terms",
]
