"""Emulated habana_frameworks.torch.hpex.kernels.

optimum-habana imports FusedSDPA at module level in a few model files, so the name must exist;
Whisper never calls it. Every other kernel is absent, so optimum-habana's `try: import` guards
take their non-fused fallbacks, as on a SynapseAI release without them.
"""


class FusedSDPA:
    """Placeholder: Gaudi's fused attention kernel is not emulated."""

    @staticmethod
    def apply(*args, **kwargs):
        raise NotImplementedError("FusedSDPA (a Gaudi kernel) is not emulated on CPU")
