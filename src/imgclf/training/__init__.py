"""training: from ImageData to a trained network and its model file.

modes.py (train(): the mode's input sizes and plan, then a Learner) and learner.py
(Learner: a plan of phases run in one loop, top to bottom) use
plan.py (which phases, the one-cycle schedule, the time limit), fitting.py (a phase's
epochs fitted to the time limit from its first timed steps), steps.py (one step and
one epoch of the schedule, and when auto mode stops), embeddings.py (cached
backbone embeddings and the probe), head_fit.py (the probe's logistic regression),
checkpoint.py, callbacks.py, lr_find.py and
distributed.py (devices, several processes under torchrun).
"""
