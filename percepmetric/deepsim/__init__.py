"""DeePSiM (Dosovitskiy & Brox 2016): generators trained with deep perceptual losses.

* :mod:`.networks` generators, discriminator, comparators, encoders (Sec. 3.1 and 4 of the paper)
* :mod:`.losses`   Eq. 1-5 and 8 of the paper, the discriminator pause rule, registry metrics as losses
* :mod:`.train`    training on a folder of images, atomic checkpoints read without running code,
                   exact resume (same data only), sizes checked against the networks
* :mod:`.evaluate` normalised errors, re-encoding / interpolation grids, ``bench_models``
                   (trained generators as models under evaluation, scored by every registry metric;
                   ``percepmetric bench --model deepsim:PATH`` reaches it through
                   :class:`percepmetric.bench.models.ModelKind`)
* :mod:`.demo`     a CPU-sized experiment on scikit-image's photos
* :mod:`.commands` ``percepmetric deepsim train|evaluate|demo``

See docs/deepsim.md.
"""
