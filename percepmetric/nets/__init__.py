"""The LPIPS backbones (:mod:`.backbones`): ImageNet trunks and the feature taps LPIPS compares."""
