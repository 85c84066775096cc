"""DeePSiM (Dosovitskiy & Brox 2016): generators trained with deep perceptual losses.

* :mod:`.losses`   Eq. 1-5 and 8 of the paper, the discriminator pause rule, registry metrics as losses
* :mod:`.train`    training on a folder of images, atomic checkpoints read without running code,
                   exact resume (same data only), sizes checked against the networks
* :mod:`.evaluate` normalised errors, re-encoding / interpolation grids, ``bench_models``
                   (trained generators as models under evaluation, scored by every registry metric)
* :mod:`.demo`     a CPU-sized experiment on scikit-image's photos
* :mod:`.commands` ``percepmetric deepsim train|evaluate|demo``

The networks live in :mod:`percepmetric.nets.deepsim`. See docs/deepsim.md.
"""
