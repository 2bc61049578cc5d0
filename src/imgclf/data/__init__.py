"""data: labelled pictures, from files on disk to batches a network reads.

sources.py (class folders, CSV, file names -> Items; the seeded split) -> verification.py
(each file read once: skipped, flagged, copied, its square view stored) -> decoding.py (any
file -> an upright RGB picture) -> transforms.py (settings -> the evaluation pipeline in
Pillow and numpy, the training one in torchvision v2) ->
datasets.py (the Dataset and collate every DataLoader uses) -> labels.py (one class or a set
of labels per picture, checked) -> imagedata.py (ImageData: the
one-line layer over all of them). Nothing here imports training, inference or later stages.
"""
