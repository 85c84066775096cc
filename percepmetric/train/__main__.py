"""``python -m percepmetric.train ARGS`` = ``percepmetric train ARGS``; what torchrun launches::

    torchrun --standalone --nproc_per_node=2 -m percepmetric.train --variant tune --out run/ ...
"""

import sys

from ..cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
